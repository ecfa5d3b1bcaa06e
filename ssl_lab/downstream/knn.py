"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018): no training,
so it measures the geometry of the representation itself, not what a head can learn on top."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from ssl_lab.downstream.features import extract_features
from ssl_lab.downstream.task import DownstreamTask


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Predicted label of each query: the class with the largest sum of ``exp(cos / T)`` over the
    query's ``k`` most similar memory-bank examples (``k`` clamped to the bank size).

    Queries are scored ``batch_size`` at a time, so memory grows with ``batch_size * len(bank)``,
    never with ``len(queries) * len(bank)``. Runs on whatever device the tensors are on.
    """
    bank = F.normalize(train_features.float(), dim=1)
    k = min(k, len(bank))
    predictions = []
    for queries in F.normalize(query_features.float(), dim=1).split(batch_size):
        similarity, neighbours = (queries @ bank.T).topk(k, dim=1)
        # Shifting by each row's best similarity rescales its weights alike (same vote) and keeps
        # exp() finite at small temperatures.
        weights = ((similarity - similarity[:, :1]) / temperature).exp()
        votes = torch.zeros(len(queries), num_classes, device=bank.device)
        votes.scatter_add_(1, train_labels.to(bank.device)[neighbours], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


class KNNClassifier(DownstreamTask):
    """The labelled subset of the train split is the memory bank; the test split is queried."""

    def __init__(
        self,
        k: int = 200,
        temperature: float = 0.07,
        batch_size: int = 1024,
    ) -> None:
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        labelled = data.loader(data.labelled_dataset())
        bank, bank_labels = extract_features(backbone, labelled, make_trainer)
        queries, labels = extract_features(backbone, data.test_dataloader(), make_trainer)
        predicted = knn_predict(
            bank, bank_labels, queries, data.num_classes, self.k, self.temperature, self.batch_size
        )
        accuracy = multiclass_accuracy(predicted, labels, data.num_classes, average="micro")
        return {
            "score": float(accuracy),
            "score_name": "test/acc",
            "knn_k": min(self.k, len(bank)),
            "knn_temperature": self.temperature,
        }
