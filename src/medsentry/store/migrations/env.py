"""Alembic environment for medsentry's schema (run by `medsentry.store.db.migrate`).

The caller passes an open connection in `config.attributes["connection"]`; without one (the
`alembic` command line, for developers writing a revision) `sqlalchemy.url` is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from medsentry.store.schema import metadata

# One fixed key for PostgreSQL's advisory lock: two processes opening a fresh database at the
# same time migrate one after the other.
_PG_MIGRATION_LOCK = 0x6D656473  # "meds"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("medsentry migrations run online only")
run_migrations_online()
