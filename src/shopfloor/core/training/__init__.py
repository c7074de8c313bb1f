"""Lightning glue: the generic supervised LightningModule and the trainer factory."""

from .module import SupervisedModule
from .trainer import fit_supervised, make_trainer, seed_everything

__all__ = ["SupervisedModule", "fit_supervised", "make_trainer", "seed_everything"]
