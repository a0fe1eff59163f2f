"""Who this worker is: a stable name per host and device, so it can recognise its own stale locks."""

import os
import socket
from dataclasses import dataclass, field
from importlib.metadata import version


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    device: str  # "cpu" or the GPU index the process is pinned to
    queues: tuple[str, ...]
    host: str = field(default_factory=socket.gethostname)

    @property
    def device_key(self) -> str:
        """The lock key of the device: one per physical GPU; a CPU worker only excludes itself."""
        return f"{self.host}:{self.name}" if self.device == "cpu" else f"{self.host}:gpu{self.device}"

    @property
    def trainer_device(self) -> str:
        # CUDA_VISIBLE_DEVICES pins the process, so its GPU is always device 0 inside it.
        return "cpu" if self.device == "cpu" else "0"

    def info(self) -> dict[str, object]:
        return {
            "id": self.name,
            "host": self.host,
            "device": self.device,
            "queues": list(self.queues),
            "pid": os.getpid(),
            "version": version("trainyard"),
        }
