"""Make Ultralytics work with no internet: our own config dir, the font it wants, no integrations.

Must run before `ultralytics` is imported, since it reads its settings at import time.
"""

import os
import shutil
from pathlib import Path


def prepare_offline(config_dir: Path) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    # Without Arial.ttf in its config dir, every dataset check tries to download it from GitHub.
    font = config_dir / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, font)

    from ultralytics import settings

    settings.update({key: False for key in settings if key in _INTEGRATIONS})
    settings.update({"sync": False})


_INTEGRATIONS = {
    "clearml",
    "comet",
    "dvc",
    "hub",
    "mlflow",
    "neptune",
    "raytune",
    "tensorboard",
    "wandb",
    "vscode_msg",
}
