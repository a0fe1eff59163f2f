"""Every Ultralytics training parameter Trainyard accepts: its type, range, group and who may set it.

Defaults are not repeated here: they live in `configs/ultralytics/<task>/default.yaml`, and a test keeps the
two in step. Ranges follow Ultralytics' own `check_cfg` unless a tighter bound saves users from a run that
cannot work (imgsz a multiple of the model stride, epochs >= 1).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypedDict

Group = Literal["basic", "advanced"]


class Kind(StrEnum):
    """How a value is checked; the value is also the type shown to API users."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    BOOL_OR_CHOICE = "bool | str"  # amp, cache, compile: a switch, or one of a few named modes
    BATCH = "int | float"  # images per batch, -1 for AutoBatch, or a fraction of GPU memory
    DEVICE = "int | str | list[int]"
    FREEZE = "int | list[int | str]"


ALL = frozenset({"detection", "segmentation", "classification", "pose"})
BOXES = frozenset({"detection", "segmentation", "pose"})  # tasks that train a box head and its augmentations
SEG = frozenset({"segmentation"})
CLS = frozenset({"classification"})
POSE = frozenset({"pose"})


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    description: str
    group: Group = "advanced"
    tasks: frozenset[str] = ALL
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    multiple_of: int | None = None
    user_mode: bool = False


class _Range(TypedDict):
    minimum: float
    maximum: float


INT, FLOAT, BOOL, STR = Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.STR
UNIT = _Range(minimum=0.0, maximum=1.0)  # Ultralytics' fraction keys

PARAMS: tuple[Param, ...] = (
    # Training
    Param(
        "epochs",
        INT,
        "number of epochs to train for",
        group="basic",
        minimum=1,
        maximum=10000,
        user_mode=True,
    ),
    Param(
        "time",
        FLOAT,
        "maximum hours to train; overrides epochs when set",
        nullable=True,
        minimum=0,
        exclusive_minimum=True,
    ),
    Param(
        "patience",
        INT,
        "stop early after N epochs without validation improvement (0 disables)",
        group="basic",
        minimum=0,
        user_mode=True,
    ),
    Param(
        "batch",
        Kind.BATCH,
        "images per batch, -1 for AutoBatch, or a float in (0, 1) for that fraction of GPU memory",
        group="basic",
        user_mode=True,
    ),
    Param(
        "imgsz",
        INT,
        "training and validation image size in pixels",
        group="basic",
        minimum=32,
        maximum=4096,
        multiple_of=32,
        user_mode=True,
    ),
    Param("save", BOOL, "save checkpoints (best.pt, last.pt)", group="basic", user_mode=True),
    Param(
        "save_period",
        INT,
        "also keep a checkpoint every N epochs; disabled if < 1",
        group="basic",
        minimum=-1,
    ),
    Param(
        "cache",
        Kind.BOOL_OR_CHOICE,
        "cache images in RAM (true or 'ram') or on 'disk' to load faster",
        group="basic",
        choices=("ram", "disk"),
    ),
    Param(
        "device",
        Kind.DEVICE,
        "device: null picks the worker's GPU, 'cpu', a CUDA index, '0,1' or [0, 1]",
        group="basic",
        nullable=True,
        user_mode=True,
    ),
    Param("workers", INT, "dataloader worker processes", group="basic", minimum=0, maximum=64),
    Param(
        "pretrained",
        BOOL,
        "keep the weights of the starting model (false re-initializes them)",
        group="basic",
    ),
    Param(
        "cls_remap",
        BOOL,
        "when fine-tuning, reuse class-head rows of classes with the same name",
        tasks=BOXES,
    ),
    Param(
        "optimizer",
        STR,
        "optimizer; 'auto' picks the optimizer and lr0 from the dataset size",
        group="basic",
        choices=("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop"),
    ),
    Param("verbose", BOOL, "print verbose logs"),
    Param("seed", INT, "random seed for reproducibility", group="basic", minimum=0),
    Param("deterministic", BOOL, "use deterministic algorithms: reproducible, sometimes slower"),
    Param("single_cls", BOOL, "train all classes as one class", tasks=BOXES),
    Param("rect", BOOL, "rectangular batches (less padding, no mosaic)", tasks=BOXES),
    Param("cos_lr", BOOL, "cosine learning-rate schedule instead of linear"),
    Param("close_mosaic", INT, "turn mosaic augmentation off for the last N epochs", tasks=BOXES, minimum=0),
    Param(
        "amp",
        Kind.BOOL_OR_CHOICE,
        "mixed precision: true/'fp16', 'bf16', or false/'fp32'",
        group="basic",
        choices=("fp16", "bf16", "fp32"),
        user_mode=True,
    ),
    Param(
        "fraction", FLOAT, "fraction of the training set to use", minimum=0, maximum=1, exclusive_minimum=True
    ),
    Param(
        "freeze",
        Kind.FREEZE,
        "freeze the first N layers, or the listed layer indices / module names",
        nullable=True,
    ),
    Param("multi_scale", FLOAT, "vary the image size by up to this fraction of imgsz", tasks=BOXES, **UNIT),
    Param(
        "compile",
        Kind.BOOL_OR_CHOICE,
        "torch.compile the model (true = 'default')",
        choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
    ),
    Param("channels_last", BOOL, "channels-last memory format (null: automatic)", nullable=True),
    Param("overlap_mask", BOOL, "merge instance masks into one mask while training", tasks=SEG),
    Param("mask_ratio", INT, "mask downsample ratio while training", tasks=SEG, minimum=1),
    Param(
        "dropout",
        FLOAT,
        "dropout of the classification head",
        tasks=CLS,
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
    ),
    # Validation during training
    Param("val", BOOL, "validate after every epoch"),
    Param("save_json", BOOL, "save COCO-format validation results", tasks=BOXES),
    Param("conf", FLOAT, "validation confidence threshold (null: 0.001)", tasks=BOXES, nullable=True, **UNIT),
    Param("iou", FLOAT, "IoU threshold of NMS during validation", tasks=BOXES, **UNIT),
    Param("max_det", INT, "maximum detections per image during validation", tasks=BOXES, minimum=1),
    Param("plots", BOOL, "save plots and sample images"),
    # Optimizer and loss
    Param(
        "lr0",
        FLOAT,
        "initial learning rate (SGD 1e-2, Adam 1e-3); ignored when optimizer is 'auto'",
        group="basic",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    ),
    Param(
        "lrf", FLOAT, "final learning rate as a fraction of lr0", minimum=0, maximum=1, exclusive_minimum=True
    ),
    Param("momentum", FLOAT, "SGD momentum / Adam beta1", **UNIT),
    Param("weight_decay", FLOAT, "weight decay (L2 regularization)", **UNIT),
    Param("warmup_epochs", FLOAT, "warmup epochs (fractions allowed)", minimum=0),
    Param("warmup_momentum", FLOAT, "initial momentum during warmup", **UNIT),
    Param("warmup_bias_lr", FLOAT, "initial bias learning rate during warmup", **UNIT),
    Param("nbs", INT, "nominal batch size: gradients accumulate up to it", minimum=1),
    Param("box", FLOAT, "box loss gain", tasks=BOXES, minimum=0),
    Param("cls", FLOAT, "classification loss gain", tasks=BOXES, minimum=0),
    Param(
        "cls_pw",
        FLOAT,
        "class-weight power against class imbalance (0 off, 1 inverse frequency)",
        tasks=BOXES,
        **UNIT,
    ),
    Param("dfl", FLOAT, "distribution focal loss gain", tasks=BOXES, minimum=0),
    Param("pose", FLOAT, "keypoint loss gain", tasks=POSE, minimum=0),
    Param("kobj", FLOAT, "keypoint objectness loss gain", tasks=POSE, minimum=0),
    Param("rle", FLOAT, "keypoint RLE loss gain", tasks=POSE, minimum=0),
    # Augmentation
    Param("hsv_h", FLOAT, "hue augmentation (fraction)", **UNIT),
    Param("hsv_s", FLOAT, "saturation augmentation (fraction)", **UNIT),
    Param("hsv_v", FLOAT, "brightness augmentation (fraction)", **UNIT),
    Param("degrees", FLOAT, "random rotation (+/- degrees)", tasks=BOXES, minimum=0, maximum=180),
    Param("translate", FLOAT, "random translation (+/- fraction)", tasks=BOXES, **UNIT),
    Param("scale", FLOAT, "random scale gain (+/- fraction)", **UNIT),
    Param("shear", FLOAT, "random shear (+/- degrees)", tasks=BOXES, minimum=0, maximum=180),
    Param("perspective", FLOAT, "random perspective (fraction, 0-0.001 typical)", tasks=BOXES, **UNIT),
    Param("flipud", FLOAT, "vertical flip probability", **UNIT),
    Param("fliplr", FLOAT, "horizontal flip probability", **UNIT),
    Param("bgr", FLOAT, "RGB/BGR channel swap probability", tasks=BOXES, **UNIT),
    Param("mosaic", FLOAT, "mosaic augmentation probability", tasks=BOXES, **UNIT),
    Param("mixup", FLOAT, "MixUp augmentation probability", tasks=BOXES, **UNIT),
    Param("cutmix", FLOAT, "CutMix augmentation probability", tasks=BOXES, **UNIT),
    Param("copy_paste", FLOAT, "copy-paste augmentation: fraction of objects pasted", tasks=SEG, **UNIT),
    Param("copy_paste_mode", STR, "copy-paste strategy", tasks=SEG, choices=("flip", "mixup")),
    Param(
        "auto_augment",
        STR,
        "auto augmentation policy (null: none)",
        tasks=CLS,
        nullable=True,
        choices=("randaugment", "autoaugment", "augmix"),
    ),
    Param("erasing", FLOAT, "random erasing probability", tasks=CLS, **UNIT),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}

# Keys the platform sets itself: a user value would point the run at other files or other storage.
RESERVED: dict[str, str] = {
    "model": "set by the platform from model_name",
    "data": "set by the platform from the dataset",
    "project": "set by the platform: it decides where runs are stored",
    "name": "set by the platform: it decides where runs are stored",
    "exist_ok": "set by the platform: it decides where runs are stored",
    "save_dir": "set by the platform: it decides where runs are stored",
    "resume": "set by the platform; resume a stopped job through its resume action",
    "mode": "set by the platform (always 'train')",
    "task": "set by the platform from the job's task",
    "cfg": "set by the platform; send the settings themselves as overrides",
}

# The safe subset a *user* preset may set; everything else needs developer mode.
USER_MODE_KEYS: tuple[str, ...] = tuple(p.name for p in PARAMS if p.user_mode)


def params_for(task: str) -> list[Param]:
    """The parameters that apply to `task`, in display order."""
    return [p for p in PARAMS if task in p.tasks]
