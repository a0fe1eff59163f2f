"""The API process loads app.datasets; it must not drag in torch or ultralytics (seconds and GBs)."""

import subprocess
import sys


def test_app_datasets_does_not_import_torch_or_ultralytics() -> None:
    code = (
        "import sys, app.datasets.convert, app.datasets.dice, app.datasets.extract; "
        "print(sorted(m for m in ('torch', 'ultralytics', 'cv2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
