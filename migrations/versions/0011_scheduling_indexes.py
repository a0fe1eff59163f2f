"""scheduling indexes: each project's best queued job in one index probe (priority descending, then
age), and the jobs started within the fair-share window without a scan of the whole table

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 0010's (status, project_id, priority, id) gave a project's jobs by priority ascending: the head query
    # (priority DESC, id) then sorted every queued job of the project. This one reads the head first.
    op.drop_index("ix_training_jobs_queue", "training_jobs")
    op.create_index(
        "ix_training_jobs_head", "training_jobs", ["status", "project_id", sa.text("priority DESC"), "id"]
    )
    op.create_index("ix_training_jobs_started", "training_jobs", ["started_at", "project_id"])


def downgrade() -> None:
    op.drop_index("ix_training_jobs_started", "training_jobs")
    op.drop_index("ix_training_jobs_head", "training_jobs")
    op.create_index("ix_training_jobs_queue", "training_jobs", ["status", "project_id", "priority", "id"])
