from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.models.base import UTCDateTime, utcnow


class Role(StrEnum):
    """admin: everything, every project, keys and projects; member: read and write in its projects;
    viewer: read only."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class ApiKey(Base):
    """An API key, `ty_<prefix>_<secret>`: only the sha256 of the whole key is kept; the prefix finds it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    # True: every project, present and future (always for admin). False: only `projects`.
    all_projects: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scopes: Mapped[list["ApiKeyProject"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def project_ids(self) -> frozenset[int] | None:
        return None if self.all_projects else frozenset(s.project_id for s in self.scopes)


class ApiKeyProject(Base):
    """One project a scoped key may see; deleting the project removes it from every key."""

    __tablename__ = "api_key_projects"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
