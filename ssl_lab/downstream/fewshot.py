"""N-way K-shot episodes on frozen features of the test split: how well a representation separates
classes from a handful of examples, the setting of Snell et al. 2017 and Chen et al. 2019.

All episodes are drawn at once as index tensors and classified in one batch, so 600 episodes
cost a few tensor ops, not 600 Python iterations.
"""

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torchmetrics.functional.classification import multiclass_accuracy

from ssl_lab.downstream.features import extract_features
from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.errors import SslLabError


def sample_episodes(
    labels: torch.Tensor,
    ways: int,
    shots: int,
    queries: int,
    episodes: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into ``labels``: support (episodes, ways, shots) and queries (episodes, ways,
    queries), way j of an episode being one class, examples drawn without replacement.

    Only classes with at least ``shots + queries`` examples take part.
    """
    classes, counts = labels.unique(return_counts=True)
    eligible = classes[counts >= shots + queries]
    if len(eligible) < ways:
        raise SslLabError(
            f"downstream=fewshot: {ways}-way {shots}-shot episodes with {queries} queries need "
            f"{ways} classes with {shots + queries} test examples each; only {len(eligible)} have"
        )
    members = pad_sequence(
        [torch.nonzero(labels == c).flatten() for c in eligible], batch_first=True, padding_value=-1
    )  # (classes, largest class)
    chosen = torch.multinomial(torch.ones(episodes, len(eligible)), ways, generator=generator)
    candidates = members[chosen]  # (episodes, ways, largest class), -1 past each class's end
    picks = torch.multinomial(
        (candidates >= 0).float().flatten(0, 1), shots + queries, generator=generator
    ).view(episodes, ways, -1)
    drawn = candidates.gather(2, picks)
    return drawn[..., :shots], drawn[..., shots:]


def prototype_predict(
    support: torch.Tensor, queries: torch.Tensor, distance: str = "euclidean"
) -> torch.Tensor:
    """Way of the nearest class mean for each query; support (E, N, K, D), queries (E, M, D)."""
    prototypes = support.mean(dim=2)
    if distance == "cosine":
        similarity = F.normalize(queries, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(1, 2)
        return similarity.argmax(-1)
    return torch.cdist(queries, prototypes).argmin(-1)


def linear_predict(
    support: torch.Tensor,
    queries: torch.Tensor,
    steps: int,
    lr: float,
    optimizer: Callable[..., torch.optim.Optimizer],
) -> torch.Tensor:
    """Way predicted by a logistic regression trained on each episode's support set (the
    baseline of Chen et al. 2019), all episodes trained as one batch of independent models.

    Features are L2-normalised so that one learning rate suits every pretext task's scale.
    """
    episodes, ways, shots, dim = support.shape
    x = F.normalize(support, dim=-1).reshape(episodes, ways * shots, dim)
    y = torch.arange(ways, device=x.device).repeat_interleave(shots).repeat(episodes)
    weight = torch.zeros(episodes, dim, ways, device=x.device, requires_grad=True)
    bias = torch.zeros(episodes, 1, ways, device=x.device, requires_grad=True)
    opt = optimizer([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            # sum over episodes of each one's mean loss: no episode's gradient depends on another
            loss = F.cross_entropy(torch.baddbmm(bias, x, weight).flatten(0, 1), y) * episodes
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return torch.baddbmm(bias, F.normalize(queries, dim=-1), weight).argmax(-1)


class FewShot(DownstreamTask):
    """Reports ``fewshot_{N}way_{K}shot`` and its 95% confidence interval for every K in
    ``shots``; the headline ``score`` is the largest K."""

    def __init__(
        self,
        seed: int,
        ways: int = 5,
        shots: Sequence[int] = (1, 5),
        queries: int = 15,
        episodes: int = 600,
        classifier: str = "prototype",
        distance: str = "euclidean",
        steps: int = 100,
        lr: float = 0.1,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    ) -> None:
        if classifier not in ("prototype", "linear"):
            raise SslLabError(f"downstream.classifier={classifier}: choose prototype or linear")
        if distance not in ("euclidean", "cosine"):
            raise SslLabError(f"downstream.distance={distance}: choose euclidean or cosine")
        self.seed = seed
        self.ways, self.shots, self.queries = ways, sorted(int(k) for k in shots), queries
        self.episodes, self.classifier, self.distance = episodes, classifier, distance
        self.steps, self.lr, self.optimizer = steps, lr, optimizer

    def _predict(self, support: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        if self.classifier == "linear":
            return linear_predict(support, queries, self.steps, self.lr, self.optimizer)
        return prototype_predict(support, queries, self.distance)

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        return self.evaluate_features(
            *extract_features(backbone, data.test_dataloader(), make_trainer)
        )

    def evaluate_features(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """The metrics of ``evaluate`` on given features, the same episodes for the same seed."""
        generator = torch.Generator().manual_seed(self.seed)
        target = torch.arange(self.ways).repeat_interleave(self.queries).expand(self.episodes, -1)
        method = self.classifier if self.classifier == "linear" else f"prototype/{self.distance}"
        metrics: dict[str, Any] = {"fewshot_classifier": method, "fewshot_episodes": self.episodes}
        for shots in self.shots:
            support, queries = sample_episodes(
                labels, self.ways, shots, self.queries, self.episodes, generator
            )
            predicted = self._predict(features[support], features[queries.flatten(1)])
            accuracy = multiclass_accuracy(
                predicted, target, self.ways, average="micro", multidim_average="samplewise"
            )  # one per episode
            key = f"fewshot_{self.ways}way_{shots}shot"
            metrics[key] = float(accuracy.mean())
            metrics[f"{key}_ci95"] = float(1.96 * accuracy.std() / self.episodes**0.5)
        return {
            **metrics,
            "score": metrics[key],
            "score_ci95": metrics[f"{key}_ci95"],
            "score_name": f"fewshot/{self.ways}way_{self.shots[-1]}shot",
        }
