"""The trainer context, defined once: everything a trainer process is told about its job
(docs/trainer-contract.md). The worker builds it, prepares its inputs, and hands it over as
environment variables (`to_env`); the trainer reads it back with `from_env` (as `sdk.context`) and
never reads the environment itself. A trainer started by hand sets the same variables.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Larger configs travel in a file (CONFIG_PATH) rather than in the environment.
CONFIG_INLINE_MAX = 32 * 1024

# Each field but the config and the variable it travels in.
VARS = {
    "job_id": "JOB_ID",
    "attempt": "ATTEMPT",
    "framework": "FRAMEWORK",
    "task_type": "TASK_TYPE",
    "model_name": "MODEL_NAME",
    "model_source": "MODEL_SOURCE",
    "dataset_id": "DATASET_ID",
    "dataset_path": "DATASET_PATH",
    "device": "DEVICE",
    "run_dir": "RUN_DIR",
    "resume_from": "RESUME_FROM",
    "config_path": "CONFIG_PATH",
    "report_fd": "TRAINYARD_REPORT_FD",
    "callback_url": "CALLBACK_URL",
    "token": "TRAINYARD_JOB_TOKEN",
}
# Derived, read-only conveniences for trainers in other languages: they repeat values of the config.
CONVENIENCE = {
    "EPOCHS": ("epochs",),
    "BATCH_SIZE": ("batch",),
    "LEARNING_RATE": ("lr0", "lr"),
    "IMGSZ": ("imgsz",),
}
# Every variable the context is made of; a worker drops its own values of these before adding a job's.
ENV_VARS = frozenset({*VARS.values(), *CONVENIENCE, "CONFIG"})


class TrainerContext(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    job_id: int = 0
    attempt: int = 1
    framework: str = ""
    task_type: str = ""
    model_name: str = ""
    model_source: str = Field(default="", description="what to build the model from: a model YAML or weights")
    dataset_id: int | None = None
    dataset_path: Path | None = Field(default=None, description="a prepared local folder")
    device: str = "cpu"
    run_dir: Path | None = Field(default=None, description="the attempt's scratch folder; gone afterwards")
    resume_from: Path | None = Field(default=None, description="last.pt of the previous attempt")
    config: dict[str, Any] = Field(default_factory=dict, description="the job's resolved config")
    config_path: Path | None = Field(default=None, description="where a large config was written")
    report_fd: int | None = Field(default=None, description="the worker's report pipe")
    callback_url: str | None = None
    token: str | None = Field(default=None, description="the attempt's job token, for the callback API")

    def to_env(self) -> dict[str, str]:
        """The environment variables a trainer process is started with (unset fields are left out)."""
        env = {var: str(getattr(self, name)) for name, var in VARS.items() if getattr(self, name) is not None}
        for var, keys in CONVENIENCE.items():
            env[var] = next((str(self.config[k]) for k in keys if k in self.config), "")
        if self.config_path is None:
            env["CONFIG"] = json.dumps(self.config)
        return {var: value for var, value in env.items() if value != ""}

    def config_fits_env(self) -> bool:
        return len(json.dumps(self.config).encode()) <= CONFIG_INLINE_MAX

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrainerContext":
        """The context of this process, from the variables `to_env` wrote (unset ones take defaults)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {name: env[var] for name, var in VARS.items() if env.get(var)}
        config_path = values.get("config_path")
        text = Path(config_path).read_text() if config_path else env.get("CONFIG") or "{}"
        values["config"] = json.loads(text)
        return cls.model_validate(values)
