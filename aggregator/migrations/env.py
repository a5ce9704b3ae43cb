"""Alembic environment for the aggregator's database.

There is no ``alembic.ini``: ``aggregator.store.migration_config(url)`` builds the
configuration in code, and ``Store.open`` runs the upgrade on a connection it has
already opened (and locked), passed in ``config.attributes["connection"]``.  Without
one (e.g. ``command.revision(..., autogenerate=True)`` from a shell) this file connects
to ``sqlalchemy.url`` itself.

No schema is named anywhere, so on PostgreSQL the tables and the ``alembic_version``
table land in the first schema of the connection's ``search_path``.  SQLite cannot
alter most constraints in place, so migrations render in batch mode there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from aggregator.store import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
