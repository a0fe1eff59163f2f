"""One error type for the whole service. Plain exceptions: no web framework here, so domain code,
formats and workers raise them freely; app/core/problems.py renders them as `application/problem+json`."""

from dataclasses import dataclass, field
from enum import StrEnum


class ErrorCode(StrEnum):
    # Request errors
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    # Models and inference
    MODEL_NOT_READY = "MODEL_NOT_READY"
    INVALID_IMAGE = "INVALID_IMAGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    INFERENCE_TIMEOUT = "INFERENCE_TIMEOUT"
    # Job failure codes, stored on the job and sent in `error` events (docs/trainer-contract.md)
    OOM = "OOM"
    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"
    INVALID_DATASET = "INVALID_DATASET"
    INVALID_CONFIG = "INVALID_CONFIG"
    CHECKPOINT_UPLOAD_FAILED = "CHECKPOINT_UPLOAD_FAILED"
    TIMEOUT = "TIMEOUT"
    USER_STOPPED = "USER_STOPPED"
    LEASE_LOST = "LEASE_LOST"
    WORKER_LOST = "WORKER_LOST"
    TRAINER_CRASHED = "TRAINER_CRASHED"
    TRANSIENT_ERROR = "TRANSIENT_ERROR"
    INVALID_REPORT = "INVALID_REPORT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass
class FieldError:
    """One rejected input: where it is (`field`, dotted) and why."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass
class AppError(Exception):
    status: int
    code: ErrorCode
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # WWW-Authenticate, Retry-After

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def not_found(what: str, ident: object) -> AppError:
    return AppError(404, ErrorCode.NOT_FOUND, f"{what} {ident} does not exist")


def invalid(field_name: str, reason: str, status: int = 422) -> AppError:
    """A single-field validation error."""
    return AppError(
        status, ErrorCode.VALIDATION_ERROR, f"{field_name}: {reason}", [FieldError(field_name, reason)]
    )


def invalid_fields(errors: list[FieldError], status: int = 422) -> AppError:
    detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    return AppError(status, ErrorCode.VALIDATION_ERROR, detail, errors)
