"""fair GPU scheduling: job priority and pool, a preemption flag, project quota and share
weight, and the one-row table that serializes scheduling decisions

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("pool", sa.String(60), nullable=True))
        batch_op.add_column(sa.Column("preempt_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_training_jobs_queue", "training_jobs", ["status", "project_id", "priority", "id"])
    with op.batch_alter_table("projects") as batch_op:
        batch_op.add_column(sa.Column("gpu_quota", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("share_weight", sa.Float(), nullable=False, server_default="1"))
    scheduler = op.create_table(
        "scheduler_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("decisions", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(scheduler, [{"id": 1, "decisions": 0}])


def downgrade() -> None:
    op.drop_table("scheduler_state")
    with op.batch_alter_table("projects") as batch_op:
        batch_op.drop_column("share_weight")
        batch_op.drop_column("gpu_quota")
    op.drop_index("ix_training_jobs_queue", "training_jobs")
    with op.batch_alter_table("training_jobs") as batch_op:
        batch_op.drop_column("preempt_requested")
        batch_op.drop_column("pool")
        batch_op.drop_column("priority")
