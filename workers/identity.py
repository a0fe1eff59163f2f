"""Who this worker is: a stable name per host and device, so it can recognise its own stale locks."""

import os
import re
import socket
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version

from app.core.settings import get_settings


def this_host() -> str:
    """The machine's name: TRAINYARD_HOST, else the hostname (a container's is random)."""
    return get_settings().resolved_host


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    device: str  # "cpu" or the GPU index the process is pinned to
    queues: tuple[str, ...]
    host: str = field(default_factory=this_host)
    # The hostname the OS gives this process. Not `host`: in a container the GPU index is the container's
    # own (its only GPU is device 0) while TRAINYARD_HOST names the whole machine, so the hostname, one
    # per container (docker-compose.worker.yml makes it the worker's name), tells a machine's GPUs apart.
    node: str = field(default_factory=socket.gethostname)
    # TRAINYARD_SIMULATE_GPU: a GPU worker in name, lease and cache policy, computing on the CPU.
    simulated: bool = False
    # The worker pool (app/scheduling/): jobs may require one; by default the GPU's model (`a100`).
    pool: str = ""

    def __post_init__(self) -> None:
        if not self.pool:
            object.__setattr__(self, "pool", default_pool(self.device, self.simulated))

    @property
    def device_key(self) -> str:
        """The lock key of the device: one per physical GPU; a CPU worker only excludes itself."""
        return f"{self.node}:{self.name}" if self.device == "cpu" else f"{self.node}:gpu{self.device}"

    @property
    def trainer_device(self) -> str:
        # CUDA_VISIBLE_DEVICES pins the process, so its GPU is always device 0 inside it.
        return "cpu" if self.device == "cpu" or self.simulated else "0"

    def info(self) -> dict[str, object]:
        return {
            "id": self.name,
            "host": self.host,
            "device": self.device,
            "device_key": self.device_key,  # who shares its GPU (workers/inference/sharing.py)
            **device_details(self.device, self.simulated),
            "queues": list(self.queues),
            "pool": self.pool,
            "pid": os.getpid(),
            "version": version("trainyard"),
        }


VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}


def pool_of(gpu_name: str) -> str:
    """A pool name from a GPU model: "NVIDIA A100-SXM4-80GB" -> "a100", "Tesla T4" -> "t4",
    "NVIDIA GeForce RTX 4090" -> "rtx4090"."""
    words = [w for w in re.split(r"[\s_]+", gpu_name.lower()) if w and w not in VENDOR_WORDS]
    if not words:
        return "gpu"
    first = re.split(r"-", words[0])[0]
    if first.isalpha() and len(words) > 1:  # "rtx 4090", "a 100"
        first += re.split(r"-", words[1])[0]
    return re.sub(r"[^a-z0-9]", "", first) or "gpu"


def default_pool(device: str, simulated: bool) -> str:
    if device == "cpu":
        return "cpu"
    if simulated:
        return "simulated"
    return pool_of(str(device_details(device).get("gpu_name") or "gpu"))


@lru_cache
def device_details(device: str, simulated: bool = False) -> dict[str, object]:
    """GPU name and memory from nvidia-smi (the GPU this process is pinned to), or the host's CPU/RAM."""
    if device != "cpu" and simulated:
        return {"gpu_name": f"simulated GPU {device}", "memory_total_mb": None}
    if device != "cpu":
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    f"--id={device}",
                    "--query-gpu=name,memory.total",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            name, memory = (part.strip() for part in out.split(",", 1))
            return {"gpu_name": name, "memory_total_mb": int(float(memory))}
        except (OSError, subprocess.SubprocessError, ValueError):
            return {"gpu_name": "unknown GPU", "memory_total_mb": None}
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return {"gpu_name": None, "cpu_count": os.cpu_count(), "memory_total_mb": ram_mb}
