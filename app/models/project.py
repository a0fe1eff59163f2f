from datetime import datetime

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.base import UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Storage paths derive from the slug, never from the raw name; a rename keeps the slug.
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # The last dataset version number handed out. Incremented under a row lock (SELECT ... FOR UPDATE)
    # so concurrent freezes get 1, 2, 3 ... with no duplicate; numbers are never reused.
    version_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Scheduling (app/scheduling/): the most GPUs its jobs hold at once while others wait (None: no
    # limit; more is borrowed, only from idle GPUs), and its weight in the fair share of the fleet.
    gpu_quota: Mapped[int | None] = mapped_column(Integer)
    share_weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)
