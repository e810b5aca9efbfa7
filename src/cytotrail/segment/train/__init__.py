"""Training the U-Net: ``cytotrail train`` and :func:`train_model` (see :mod:`.loop`)."""

from cytotrail.segment.train.loop import (
    CHECKPOINT,
    DEFAULTS,
    DIAMETER_RANGE,
    TRAIN_DIAMETER,
    CropDataset,
    _augment_intensity,
    add_parser,
    default_batch_size,
    default_workers,
    evaluate,
    read_checkpoint,
    sample_weights,
    train_model,
    tune_thresholds,
)

__all__ = [
    "CHECKPOINT",
    "DEFAULTS",
    "DIAMETER_RANGE",
    "TRAIN_DIAMETER",
    "CropDataset",
    "_augment_intensity",
    "add_parser",
    "default_batch_size",
    "default_workers",
    "evaluate",
    "read_checkpoint",
    "sample_weights",
    "train_model",
    "tune_thresholds",
]
