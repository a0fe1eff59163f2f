"""Every table, so that `Base.metadata` is complete once this package is imported."""

from app.models.api_key import ApiKey, ApiKeyProject, Role
from app.models.dataset import Dataset, DatasetVersion, VersionStatus
from app.models.project import Project
from app.models.training import JobEvent, TrainingJob, TrainingLog

__all__ = [
    "ApiKey",
    "ApiKeyProject",
    "Dataset",
    "DatasetVersion",
    "JobEvent",
    "Project",
    "Role",
    "TrainingJob",
    "TrainingLog",
    "VersionStatus",
]
