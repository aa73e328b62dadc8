"""Errors that reach the user: one clear line, exit code 2 (see cli)."""

from __future__ import annotations

from collections.abc import Iterator


class MedsentryError(Exception):
    """Base of every error the CLI reports as one line with exit code 2."""

    exit_code = 2


class InputError(MedsentryError):
    """Bad input: a file, record or document that cannot be read as what it claims to be.

    `source` names the file (or document), `offset` the byte offset where the damage is.
    """

    def __init__(self, message: str, source: str | None = None, offset: int | None = None):
        self.source = source
        self.offset = offset
        where = ""
        if source is not None:
            where = f"{source}"
            if offset is not None:
                where += f" at byte {offset}"
            where += ": "
        super().__init__(where + message)


class CaptureError(InputError):
    """A packet capture that cannot be read (wrong magic, truncated header, bad block)."""


class StoreError(MedsentryError):
    """The database cannot be opened, migrated or written."""


class ConfigError(MedsentryError):
    """A configuration or knowledge file is invalid."""


def raised_from(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or during (a DB-API error a SQLAlchemy
    error wraps as `orig`, `__cause__`, `__context__`), each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def utf8_error_offset(data: bytes) -> int | None:
    """The byte offset of the first byte of `data` that is not UTF-8 (None: all of it is)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None
