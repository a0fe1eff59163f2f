from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.naming import NAME_PATTERN


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="unique; letters, digits, space, '.', '_', '-'")
    description: str | None = Field(default=None, max_length=2000)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="the slug (storage) stays")
    description: str | None = Field(default=None, max_length=2000)
    gpu_quota: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="admin keys: the GPUs its jobs hold at once while others wait (null: no limit); "
        "past it a job only borrows an idle GPU",
    )
    share_weight: float | None = Field(
        default=None,
        gt=0,
        le=1_000,
        description="admin keys: its weight in the fleet's fair share (default 1)",
    )


class ProjectRead(BaseModel):
    id: int
    name: str
    slug: str
    description: str | None
    storage_prefix: str
    datasets: int
    versions: int
    jobs: int
    gpu_quota: int | None
    share_weight: float
    running_jobs: int
    created_at: datetime
    updated_at: datetime | None


class ProjectPage(BaseModel):
    items: list[ProjectRead]
    total: int
    limit: int
    offset: int
