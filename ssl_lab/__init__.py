"""ssl_lab: self-supervised pretraining and transfer learning experiments."""

__version__ = "0.1.0"
