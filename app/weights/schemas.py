from datetime import datetime

from pydantic import BaseModel, ConfigDict


class WeightsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    sha256: str
    size_bytes: int
    framework: str
    task_type: str
    architecture: str
    class_names: list[str]
    source: str
    ultralytics_version: str | None
    weights_key: str
    status: str
    status_reason: str | None
    validated_at: datetime | None
    created_at: datetime


class WeightsPage(BaseModel):
    items: list[WeightsRead]
    total: int
    limit: int
    offset: int
