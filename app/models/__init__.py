"""Every table, so that `Base.metadata` is complete once this package is imported."""

from app.models.dataset import Dataset, DatasetVersion, VersionStatus
from app.models.project import Project
from app.models.training import JobEvent, TrainingJob, TrainingLog

__all__ = ["Dataset", "DatasetVersion", "JobEvent", "Project", "TrainingJob", "TrainingLog", "VersionStatus"]
