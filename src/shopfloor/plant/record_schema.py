"""The record store's tables; the Alembic migrations in ``migrations/versions`` create exactly these (a test
compares them)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .record_checks import as_utc


class UTCDateTime(sa.TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores it as naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value, "timestamp")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


metadata = sa.MetaData()
records_table = sa.Table(
    "shopfloor_records", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("artifact_hash", sa.String(200), nullable=False),
    sa.Column("source", sa.String(1000), nullable=True),
    sa.Column("input_fingerprint", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("score", sa.Float(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("key", sa.String(500), nullable=True),
    sa.Column("result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column("input_file", sa.String(300), nullable=True),
    sa.Column("heatmap_file", sa.String(300), nullable=True),
    sa.UniqueConstraint("key", name="uq_shopfloor_records_key"),
    sa.Index("ix_shopfloor_records_created", "created"),
    sa.Index("ix_shopfloor_records_model_id", "model", "id"),
    sa.Index("ix_shopfloor_records_source_id", "source", "id"),
    sa.Index("ix_shopfloor_records_label_id", "label", "id"),
    sa.Index("ix_shopfloor_records_input_file", "input_file"),
    sa.Index("ix_shopfloor_records_heatmap_file", "heatmap_file"),
    sqlite_autoincrement=True,
)
files_table = sa.Table(
    "shopfloor_record_files", metadata,
    sa.Column("path", sa.String(300), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("last_record_id", sa.BigInteger(), nullable=False),
    sa.Index("ix_shopfloor_record_files_last_record_id", "last_record_id"),
)
