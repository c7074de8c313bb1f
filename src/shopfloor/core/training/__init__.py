"""Lightning glue: the generic supervised LightningModule and the trainer factory."""

from .module import SupervisedModule, balanced_class_weights
from .trainer import fit_supervised, make_trainer, seed_everything

__all__ = ["SupervisedModule", "balanced_class_weights", "fit_supervised", "make_trainer", "seed_everything"]
