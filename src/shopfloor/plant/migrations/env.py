"""Alembic environment for the prediction record store (``shopfloor.plant.records``).

Run programmatically by ``RecordStore`` at open (``records.upgrade``): the caller hands over a connection already
inside a transaction (``config.attributes["connection"]``), so the whole upgrade is one transaction (PostgreSQL:
under an advisory lock; SQLite: ``BEGIN IMMEDIATE``), and concurrent openers of an empty database do not race.
Without a connection (the ``alembic`` command line with ``sqlalchemy.url`` set), an engine is made from the URL.
The version table is ``shopfloor_alembic_version`` so a database shared with another Alembic project is safe.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

VERSION_TABLE = context.config.attributes.get("version_table", "shopfloor_alembic_version")

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # `alembic upgrade head --sql`: the SQL for a database administrator
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _run(config.attributes["connection"])
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()
