"""Make Ultralytics work with no internet: our own config dir, the font it wants, no integrations.

Must run before `ultralytics` is imported, since it reads its settings at import time.
"""

import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("operations.training")


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
    _no_amp_download()


def _no_amp_download() -> None:
    """On a GPU, Ultralytics' AMP check loads `yolo26n.pt` and downloads it when missing: on an air-gapped
    host the job would wait on a download that cannot succeed. Without that file the check is skipped
    (AMP stays on, as Ultralytics itself does when offline) and the reason is logged."""
    from ultralytics.engine import trainer
    from ultralytics.utils import WEIGHTS_DIR

    original = trainer.check_amp
    if getattr(original, "__trainyard_offline__", False):
        return

    def check_amp(model: Any) -> bool:
        on_gpu = next(model.parameters()).device.type == "cuda"
        if on_gpu and not (WEIGHTS_DIR / "yolo26n.pt").is_file():
            log.warning(
                "AMP check skipped: it needs yolo26n.pt, which is not on this worker and is never fetched; "
                "AMP stays on (set amp: false in the job's config if losses turn NaN)"
            )
            return True
        return bool(original(model))

    check_amp.__trainyard_offline__ = True  # type: ignore[attr-defined]
    trainer.check_amp = check_amp


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
