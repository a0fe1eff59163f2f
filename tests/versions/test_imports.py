"""Version augmentation runs in the API process: Albumentations must come without torch."""

import subprocess
import sys


def test_the_api_with_albumentations_loaded_has_no_torch() -> None:
    code = (
        "import sys, app.main; from app.versions.augment import albumentations; "
        "albumentations().HorizontalFlip(p=1); "
        "print(sorted(m for m in ('torch', 'ultralytics', 'albumentations') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['albumentations']"
