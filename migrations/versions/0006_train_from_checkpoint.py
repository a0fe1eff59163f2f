"""training jobs remember the checkpoint they started from

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch_op:
        batch_op.add_column(sa.Column("checkpoint_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("checkpoint_model_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parent_job_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch_op:
        batch_op.drop_column("parent_job_id")
        batch_op.drop_column("checkpoint_model_id")
        batch_op.drop_column("checkpoint_path")
