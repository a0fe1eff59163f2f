"""A trainer process started before its job (workers/trainer_process.py starts it).

    python -m workers.trainer_host MODULE...

It imports MODULE... (calling each one's `preload()` if it has one: torch, Ultralytics, what a
trainer imports anyway; nothing that touches a device), then waits for one order on stdin: the
trainer's arguments, environment and folder. It then becomes exactly that trainer: the environment is
replaced, stdin is /dev/null, and the trainer runs as `__main__` as `python ARGS...` would run it. One
process serves one job and exits with it; no state of one job can reach another.
"""

import importlib
import json
import os
import runpy
import sys


def preload(modules: list[str]) -> None:
    for name in modules:
        module = importlib.import_module(name)
        hook = getattr(module, "preload", None)
        if callable(hook):
            hook()


def become(argv: list[str], env: dict[str, str], cwd: str) -> None:
    """Run the trainer `python *argv` would run, in `cwd` with exactly `env`."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if argv[0] == "-m":
        sys.argv = argv[1:]
        sys.path[0] = cwd  # as `python -m` puts it
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python SCRIPT` puts it
        runpy.run_path(argv[0], run_name="__main__")


def main() -> None:
    preload(sys.argv[1:])
    line = sys.stdin.buffer.readline()
    if not line:
        return  # the worker closed without a job (it is shutting down)
    order = json.loads(line)
    become(order["argv"], order["env"], order["cwd"])


if __name__ == "__main__":
    main()
