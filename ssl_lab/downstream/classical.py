"""The no-deep-learning reference: a scikit-learn classifier on raw (normalised, flattened) pixels
of the same labelled subset. A pretrained representation that cannot beat it has learned nothing
a linear model on pixels could not find."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from sklearn.base import ClassifierMixin
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_accuracy

from ssl_lab.downstream.task import DownstreamTask


def _flat_arrays(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return inputs.flatten(1), labels


class ClassicalBaseline(DownstreamTask):
    """Ignores the backbone. ``requires_pretext`` (``none``) is declared in the config so the
    pipeline can refuse, before pretraining, a run whose pretraining this task would ignore."""

    def __init__(self, classifier: ClassifierMixin) -> None:
        self.classifier = classifier

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        x_train, y_train = _flat_arrays(data.labelled_dataset())
        x_test, y_test = _flat_arrays(data.splits["test"])
        self.classifier.fit(x_train.numpy(), y_train.numpy())
        predicted = torch.as_tensor(self.classifier.predict(x_test.numpy()))
        accuracy = multiclass_accuracy(predicted, y_test, data.num_classes, average="micro")
        return {"score": float(accuracy), "score_name": "test/acc"}
