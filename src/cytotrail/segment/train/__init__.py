"""Training the U-Net: ``cytotrail train`` and :func:`train_model`.

Modules, one responsibility each:

- :mod:`.defaults`: the recipe's defaults (:data:`DEFAULTS`) and the hardware's (workers, batch size);
- :mod:`.crops`: crop drawing, augmentation, the torch ``Dataset`` and worker seeding;
- :mod:`.checkpoint`: writing, reading and checking checkpoints, and a resumed run's checks;
- :mod:`.loop`: :func:`train_model` (device, autocast, optimiser, schedule, progress);
- :mod:`.thresholds`: post-processing thresholds tuned on validation samples, and :func:`evaluate`;
- :mod:`.cli`: the ``cytotrail train`` subcommand (:func:`add_parser`).

torch is imported inside the functions that use it, so importing this package stays light.
"""

from cytotrail.segment.train.checkpoint import CHECKPOINT, read_checkpoint
from cytotrail.segment.train.cli import add_parser
from cytotrail.segment.train.crops import CropDataset, sample_weights
from cytotrail.segment.train.defaults import (
    DEFAULTS,
    DIAMETER_RANGE,
    TRAIN_DIAMETER,
    default_batch_size,
    default_workers,
)
from cytotrail.segment.train.loop import train_model
from cytotrail.segment.train.thresholds import evaluate, tune_thresholds

__all__ = [
    "train_model",
    "read_checkpoint",
    "tune_thresholds",
    "evaluate",
    "add_parser",
    "CropDataset",
    "sample_weights",
    "default_batch_size",
    "default_workers",
    "DEFAULTS",
    "TRAIN_DIAMETER",
    "DIAMETER_RANGE",
    "CHECKPOINT",
]
