"""The API describes a .pt without torch: importing the app and reading a checkpoint loads neither
torch nor Ultralytics (the web process stays small and never runs a file's code)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_describing_a_pt_imports_neither_torch_nor_ultralytics(yolo11n_pt: Path) -> None:
    code = (
        "import sys; from app.main import create_app; create_app;"
        "from app.weights.checkpoint import inspect_checkpoint;"
        f"info = inspect_checkpoint(open({str(yolo11n_pt)!r}, 'rb'));"
        "print(info.task_type, info.architecture, len(info.class_names), info.has_optimizer);"
        "print(sorted({'torch', 'ultralytics'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["detection yolo11n 80 False", "[]"]
