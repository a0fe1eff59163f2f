"""The trainer side of Trainyard's contract (docs/trainer-contract.md): the context a trainer is
given, the reports it sends, and the SDK that sends them. Depends on pydantic and httpx only."""

from trainyard_sdk.context import TrainerContext
from trainyard_sdk.reports import Phase, ReportType
from trainyard_sdk.sdk import ReportRefused, TrainerSDK

__all__ = ["Phase", "ReportRefused", "ReportType", "TrainerContext", "TrainerSDK"]
