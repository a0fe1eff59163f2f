"""Every table, so that `Base.metadata` is complete once this package is imported."""

from app.models.api_key import ApiKey, ApiKeyProject, Role
from app.models.dataset import Dataset, DatasetVersion, VersionStatus
from app.models.project import Project
from app.models.registry import Deployment, DeploymentAction, ModelStatus, RegisteredModel
from app.models.training import JobEvent, SchedulerState, TrainingJob, TrainingLog
from app.models.weights import ArtifactStatus, BaseWeights, ExportFormat, ModelExport

__all__ = [
    "ApiKey",
    "ApiKeyProject",
    "ArtifactStatus",
    "BaseWeights",
    "Dataset",
    "DatasetVersion",
    "Deployment",
    "DeploymentAction",
    "ExportFormat",
    "JobEvent",
    "ModelExport",
    "ModelStatus",
    "Project",
    "RegisteredModel",
    "Role",
    "SchedulerState",
    "TrainingJob",
    "TrainingLog",
    "VersionStatus",
]
