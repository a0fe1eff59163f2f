"""base weights, model exports, and the base weights a model's lineage starts from

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("framework", sa.String(length=40), nullable=False),
        sa.Column("task_type", sa.String(length=40), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("ultralytics_version", sa.String(length=40), nullable=True),
        sa.Column("weights_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("validated_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("sha256"),
    )
    with op.batch_alter_table("base_weights") as batch_op:
        batch_op.create_index(batch_op.f("ix_base_weights_task_type"), ["task_type"], unique=False)

    op.create_table(
        "model_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "format", name="uq_model_exports_model_format"),
    )
    with op.batch_alter_table("model_exports") as batch_op:
        batch_op.create_index(batch_op.f("ix_model_exports_model_id"), ["model_id"], unique=False)

    with op.batch_alter_table("models") as batch_op:
        batch_op.add_column(sa.Column("base_weights_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_models_base_weights_sha256"), ["base_weights_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("models") as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_base_weights_sha256"))
        batch_op.drop_column("base_weights_sha256")
    op.drop_table("model_exports")
    op.drop_table("base_weights")
