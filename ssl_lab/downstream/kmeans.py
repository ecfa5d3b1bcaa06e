"""k-means on frozen test features, scored against the true classes: does the representation
group the classes without any label at all (no labelled subset is used)."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn
from torchmetrics.functional.clustering import adjusted_rand_score, normalized_mutual_info_score

from ssl_lab.downstream.features import extract_features
from ssl_lab.downstream.task import DownstreamTask


def cluster(features: torch.Tensor, clusters: int, n_init: int = 10, seed: int = 0) -> torch.Tensor:
    """Cluster index of each row. Rows are L2-normalised first: pretext tasks leave features on
    very different scales, and direction is what kNN and prototypes compare too."""
    points = F.normalize(features.float(), dim=1).numpy()
    assignment = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit_predict(points)
    return torch.as_tensor(assignment, dtype=torch.long)


class KMeansClustering(DownstreamTask):
    """As many clusters as classes; NMI is the score, ARI is reported beside it."""

    def __init__(self, seed: int, n_init: int = 10) -> None:
        self.seed, self.n_init = seed, n_init

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        features, labels = extract_features(backbone, data.test_dataloader(), make_trainer)
        return self.evaluate_features(features, labels, data.num_classes)

    def evaluate_features(
        self, features: torch.Tensor, labels: torch.Tensor, num_classes: int
    ) -> dict[str, Any]:
        """The metrics of ``evaluate`` on given features."""
        assignment = cluster(features, num_classes, self.n_init, self.seed)
        return {
            "score": float(normalized_mutual_info_score(assignment, labels)),
            "score_name": "test/nmi",
            "test_ari": float(adjusted_rand_score(assignment, labels)),
        }
