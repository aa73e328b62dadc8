"""medsentry.yamlcache through yamlfile.load: a text parsed once is read back from the cache as
the same document, and a cache that is damaged, unwritable or absent only means parsing again."""

from __future__ import annotations

import datetime
from importlib import resources
from pathlib import Path

import pytest
import yaml

from medsentry import paths, yamlcache, yamlfile

DOC = "a: &shared [1, 2.5, -0.0, .nan, null, true, 'x']\nb: *shared\nc: {1: !!binary aGk=}\n"


def _entries() -> list[Path]:
    return sorted((paths.cache_dir() / "yaml").glob("*.marshal"))


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (True is not 1, NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    return a == b or (a != a and b != b)


def test_a_text_parsed_twice_comes_back_from_the_cache_as_the_same_document() -> None:
    first = yamlfile.load(DOC)
    assert len(_entries()) == 1
    again = yamlfile.load(DOC)
    assert _same(first, again) and _same(again, yaml.safe_load(DOC))
    assert again["a"] is again["b"]  # an alias is still one object
    again["a"].append(3)  # a new copy each time: a caller's change stays its own
    assert _same(yamlfile.load(DOC), first)


def test_every_data_file_reads_back_exactly_as_parsed() -> None:
    data = resources.files("medsentry.data")
    names = sorted(p.name for p in data.iterdir() if p.name.endswith(".yaml"))
    assert len(names) > 20
    for name in names:
        text = data.joinpath(name).read_text("utf-8")
        parsed = yamlfile.load(text)
        assert _same(yamlfile.load(text), parsed), name
        assert _same(parsed, yaml.safe_load(text)), name


def test_str_and_bytes_of_one_text_are_two_entries() -> None:
    yamlfile.load(DOC)
    yamlfile.load(DOC.encode())
    assert len(_entries()) == 2


def test_a_damaged_entry_is_parsed_again() -> None:
    yamlfile.load(DOC)
    (entry,) = _entries()
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert _same(yamlfile.load(DOC), yaml.safe_load(DOC))
    entry.write_bytes(b"not an entry")
    assert _same(yamlfile.load(DOC), yaml.safe_load(DOC))


def test_an_unwritable_cache_only_means_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(paths, "cache_dir", lambda: blocker / "cache")  # under a file: ENOTDIR
    assert _same(yamlfile.load(DOC), yaml.safe_load(DOC))
    assert _same(yamlfile.load(DOC), yaml.safe_load(DOC))


def test_a_timestamp_is_not_kept_and_still_loads() -> None:
    assert yamlfile.load("since: 2024-05-01\n") == {"since": datetime.date(2024, 5, 1)}
    assert _entries() == []
    assert yamlfile.load("since: 2024-05-01\n") == {"since": datetime.date(2024, 5, 1)}


def test_errors_are_never_kept() -> None:
    for _ in range(2):
        with pytest.raises(yaml.YAMLError):
            yamlfile.load("a: [1, 2\n")
        with pytest.raises(yaml.MarkedYAMLError, match="nested more than"):
            yamlfile.load("[" * (yamlfile.MAX_DEPTH + 1) + "]" * (yamlfile.MAX_DEPTH + 1))
    assert _entries() == []


def test_another_parser_makes_another_entry() -> None:
    assert yamlcache.key(DOC, "a") != yamlcache.key(DOC, "b")


def test_the_warm_up_hands_its_parsed_files_to_the_user(monkeypatch, tmp_path: Path) -> None:
    from medsentry.warmup import keep_parsed_data

    warm, user = tmp_path / "warm-cache", tmp_path / "user-cache"
    monkeypatch.setattr(paths, "cache_dir", lambda: warm)
    yamlfile.load(DOC)  # the warm-up's own cache
    (warm / "yaml" / "stray.tmp").write_text("")  # not an entry: not copied
    assert keep_parsed_data(warm, user) == 1
    assert sorted(p.name for p in (user / "yaml").iterdir()) == [p.name for p in _entries()]
    monkeypatch.setattr(paths, "cache_dir", lambda: user)
    (warm / "yaml").rename(tmp_path / "gone")
    assert _same(yamlfile.load(DOC), yaml.safe_load(DOC))  # read back from the user's copy
    assert keep_parsed_data(warm, user) == 0  # nothing to hand over


def test_an_unwritable_user_cache_keeps_nothing_and_raises_nothing(monkeypatch, tmp_path) -> None:
    from medsentry.warmup import keep_parsed_data

    warm = tmp_path / "warm-cache"
    monkeypatch.setattr(paths, "cache_dir", lambda: warm)
    yamlfile.load(DOC)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert keep_parsed_data(warm, blocker / "cache") == 0
