"""Prediction records and the content-addressed input/heatmap files they reference.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shopfloor_records",
        # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite (rowid, never reused), BIGSERIAL on PostgreSQL
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("artifact_hash", sa.String(200), nullable=False),
        sa.Column("source", sa.String(1000), nullable=True),
        sa.Column("input_fingerprint", sa.String(200), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("key", sa.String(500), nullable=True),  # 500 chars: within the PostgreSQL btree row limit
        sa.Column("result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("input_file", sa.String(300), nullable=True),
        sa.Column("heatmap_file", sa.String(300), nullable=True),
        sa.UniqueConstraint("key", name="uq_shopfloor_records_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_shopfloor_records_created", "shopfloor_records", ["created"])
    op.create_index("ix_shopfloor_records_model_id", "shopfloor_records", ["model", "id"])
    op.create_index("ix_shopfloor_records_source_id", "shopfloor_records", ["source", "id"])
    op.create_index("ix_shopfloor_records_label_id", "shopfloor_records", ["label", "id"])
    op.create_index("ix_shopfloor_records_input_file", "shopfloor_records", ["input_file"])
    op.create_index("ix_shopfloor_records_heatmap_file", "shopfloor_records", ["heatmap_file"])
    op.create_table(
        "shopfloor_record_files",
        sa.Column("path", sa.String(300), primary_key=True),  # relative to inputs_dir: ab/cd/<sha256>[.png]
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # "input" or "heatmap"
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_record_id", sa.BigInteger(), nullable=False),  # retention: least recently referenced first
    )
    op.create_index("ix_shopfloor_record_files_last_record_id", "shopfloor_record_files", ["last_record_id"])


def downgrade() -> None:
    op.drop_table("shopfloor_record_files")
    op.drop_table("shopfloor_records")
