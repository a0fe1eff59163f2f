"""The trainer child process of an attempt, and the one a worker keeps ready for its next attempt.

A fresh trainer spends seconds importing torch and Ultralytics before its job can begin. So a worker
starts the next trainer process ahead (workers/trainer_host.py: imports done, nothing device-specific),
hands it the job when one is claimed, and starts the next spare once that attempt is over, when the
trainer no longer competes for the CPU. A process serves one job only. Its isolation is that of a cold
start: its own process and session (killed with its process group), exactly the job's environment and
folder, and it dies with the worker.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger("operations.training")


@dataclass
class TrainerProcess:
    process: subprocess.Popen[bytes]
    reports: IO[bytes]  # the report pipe's read end
    report_fd: int  # its write end's number inside the trainer (TRAINYARD_REPORT_FD)

    def hand(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Give the process its job: from here on it is the trainer `python *argv` would be."""
        assert self.process.stdin is not None
        order = {"argv": argv, "env": env, "cwd": str(cwd)}
        self.process.stdin.write(json.dumps(order).encode() + b"\n")
        self.process.stdin.close()

    def kill(self) -> None:
        """Kill a process nobody reads from (a spare), and close its report pipe."""
        kill_group(self.process)
        with contextlib.suppress(OSError):
            self.reports.close()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a trainer with everything it started (its session's process group), and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def start_trainer_process(env: dict[str, str], cwd: Path, preload: tuple[str, ...] = ()) -> TrainerProcess:
    """A trainer host waiting for its job on stdin, having imported `preload` first."""
    cwd.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.trainer_host", *preload],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            cwd=cwd,
            # Own session: Ctrl-C on the terminal reaches the worker, which decides what the
            # trainer gets. Parent-death signal: a killed worker takes its trainer with it.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return TrainerProcess(process, os.fdopen(read_fd, "rb"), write_fd)


class SpareTrainer:
    """The one trainer process a worker keeps started ahead of its next job (none when disabled)."""

    def __init__(
        self, env: Callable[[], dict[str, str]], cwd: Path, preload: tuple[str, ...], enabled: bool
    ) -> None:
        self.env = env  # the trainer's environment but the job's own variables
        self.cwd = cwd
        self.preload = preload
        self.enabled = enabled
        self._spare: TrainerProcess | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The spare's process id, if there is one."""
        spare = self._spare
        return None if spare is None else spare.process.pid

    def prepare(self) -> None:
        """Start the spare, unless there is one (or spares are off)."""
        with self._lock:
            if self.enabled and self._spare is None:
                self._spare = start_trainer_process(self.env(), self.cwd, self.preload)

    def run(self, argv: list[str], job_env: Callable[[int], dict[str, str]], cwd: Path) -> TrainerProcess:
        """The trainer of a job: the spare, handed the job, else a process started for it.
        `job_env(report_fd)` is the job's whole environment for a process with that report pipe."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            try:
                spare.hand(argv, job_env(spare.report_fd), cwd)
                return spare
            except OSError:  # it died while waiting (its output says why)
                code = spare.process.poll()
                log.warning("the spare trainer process had exited (code %s); starting one", code)
                spare.kill()
        trainer = start_trainer_process(self.env(), self.cwd)
        trainer.hand(argv, job_env(trainer.report_fd), cwd)
        return trainer

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
