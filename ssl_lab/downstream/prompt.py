"""Prompting (PET, Schick & Schütze 2021): classify by asking the language model to fill a gap.

Each text is put into a pattern with one [MASK] (``{text}。总之很[MASK]。``); each label has one
verbalizer token (差 / 好); the predicted label is the one whose token the model finds most
likely at the mask. Zero-shot (the default) uses no labels at all; ``few_shot`` first fine-tunes
the language model on the patterns with the labelled subset (PET's loss: cross-entropy over the
verbalizers' scores at the mask; one model for all patterns). With ``calibrate`` (Zhao et al.
2021, "Calibrate before use") each verbalizer's log-probability is read relative to its value for
the pattern around an empty text, which removes the model's prior preference for one of them
without using any label; the uncalibrated accuracy is reported too. A causal model (``pretext=clm``)
scores each verbalizer as the next token after the pattern, cut at its [MASK]; it uses only the
patterns whose [MASK] comes after the text (``prompt_patterns`` in metrics.json lists them).
"""

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.errors import SslLabError
from ssl_lab.optim import configure_optimizers
from ssl_lab.ranks import gather_cat, unrepeated

MASK = "[MASK]"


def _template_ids(tokenizer, template: str) -> list[int]:
    """Token ids of a piece of pattern, with the tokenizer's own mask id where it says [MASK]."""
    ids: list[int] = []
    for i, part in enumerate(template.split(MASK)):
        if i:
            ids.append(tokenizer.ids["mask"])
        if part:
            ids += tokenizer.pieces(part)
    return ids


def fill_pattern(
    tokenizer, texts: Sequence[str], pattern: str, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, L), position (N,)): each text in ``pattern`` (cut to fit ``max_length``, never
    the pattern), and the position whose scores decide: the [MASK], or for a causal model the
    last token before where the [MASK] was."""
    prefix, suffix = pattern.split("{text}")
    if causal:
        suffix = suffix.split(MASK)[0]
    head, tail = _template_ids(tokenizer, prefix), _template_ids(tokenizer, suffix)
    cls, sep = tokenizer.ids.get("cls"), tokenizer.ids.get("sep")
    start = [cls] if cls is not None else []
    end = [sep] if sep is not None and not causal else []
    room = tokenizer.max_length - len(start) - len(head) - len(tail) - len(end)
    if room < 1:
        raise SslLabError(
            f"downstream.patterns: '{pattern}' leaves no room for the text in "
            f"{tokenizer.max_length} tokens"
        )
    rows = [start + head + ids[:room] + tail + end for ids in tokenizer.pieces_batch(texts)]
    ids = torch.full((len(rows), max(map(len, rows))), tokenizer.ids["pad"], dtype=torch.long)
    positions = torch.empty(len(rows), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        positions[i] = (
            len(row) - 1 - len(end) if causal else row.index(tokenizer.ids["mask"], len(start))
        )
    return ids, positions


def raw_and_calibrated_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(uncalibrated, calibrated) accuracy of verbalizer ``scores`` (N, classes) over the rows
    labelled with a class. The first row labelled -1 is the content-free input (the pattern
    around an empty text): calibration subtracts its log-probabilities from every row's, so a
    word the model prefers whatever the text loses that head start."""
    log_p = scores.log_softmax(1)
    real = labels >= 0
    raw = float((log_p[real].argmax(1) == labels[real]).float().mean())
    calibrated = float(((log_p[real] - log_p[~real][0]).argmax(1) == labels[real]).float().mean())
    return raw, calibrated


class PromptModule(pl.LightningModule):
    """Scores of the verbalizer tokens at the decisive position; trained (few-shot) with
    cross-entropy over those scores."""

    def __init__(
        self,
        backbone: nn.Module,
        verbalizer_ids: Sequence[int],
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.lr = backbone, lr
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.register_buffer("verbalizers", torch.tensor(list(verbalizer_ids)), persistent=False)

    def scores(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(ids)
        at = features[torch.arange(len(ids), device=ids.device), positions]
        return self.backbone.lm_head(at)[:, self.verbalizers].float()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ids, positions, labels = batch
        loss = F.cross_entropy(self.scores(ids, positions), labels)
        self.log("transfer/train_loss", loss, on_step=False, on_epoch=True, batch_size=len(ids))
        return loss

    def predict_step(self, batch, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids, positions, labels = batch
        return self.scores(ids, positions).cpu(), labels.cpu()

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        return configure_optimizers(
            [{"params": params}], self.lr, self.optimizer_factory, self.scheduler_factory
        )


class Prompt(DownstreamTask):
    """Reports ``test/acc_pattern{i}`` for each pattern; the headline ``score`` is their mean."""

    def __init__(
        self,
        patterns: Sequence[str] | None,
        verbalizers: Sequence[str] | None,
        few_shot: bool = False,
        epochs: int = 2,
        lr: float = 1e-4,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        calibrate: bool = True,
    ) -> None:
        if not patterns or not verbalizers:
            raise SslLabError(
                "downstream=prompt needs downstream.patterns and "
                "downstream.verbalizers (this dataset's config sets none)"
            )
        for pattern in patterns:
            if pattern.count("{text}") != 1 or pattern.count(MASK) != 1:
                raise SslLabError(
                    f"downstream.patterns: '{pattern}' must hold {{text}} and {MASK} once each"
                )
        self.patterns, self.verbalizers = list(patterns), list(verbalizers)
        self.few_shot, self.epochs, self.lr = few_shot, epochs, lr
        self.calibrate = calibrate
        self.optimizer, self.scheduler = optimizer, scheduler

    def _verbalizer_ids(self, tokenizer, num_classes: int) -> list[int]:
        if len(self.verbalizers) != num_classes:
            raise SslLabError(
                f"downstream.verbalizers: {len(self.verbalizers)} words for {num_classes} classes"
            )
        ids = []
        for word in self.verbalizers:
            pieces = tokenizer.pieces(word)
            if len(pieces) != 1 or pieces[0] == tokenizer.ids.get("unk"):
                raise SslLabError(
                    f"downstream.verbalizers: '{word}' is not one known token of "
                    f"this tokenizer ({[tokenizer.token(i) for i in pieces]})"
                )
            ids.append(pieces[0])
        return ids

    def _dataset(
        self,
        data: pl.LightningDataModule,
        texts: Sequence[str],
        labels: Sequence[int],
        causal: bool,
        patterns: Sequence[str],
    ) -> TensorDataset:
        """Each text under each of ``patterns``, padded to one width."""
        filled = [fill_pattern(data.tokenizer, texts, p, causal) for p in patterns]
        width = max(ids.shape[1] for ids, _ in filled)
        ids = torch.cat(
            [F.pad(i, (0, width - i.shape[1]), value=data.tokenizer.ids["pad"]) for i, _ in filled]
        )
        return TensorDataset(
            ids,
            torch.cat([p for _, p in filled]),
            torch.tensor(list(labels) * len(patterns), dtype=torch.long),
        )

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        causal = bool(getattr(backbone, "causal", False))
        patterns = self.patterns
        if causal:  # a causal model reads left to right: the gap must come after the text
            patterns = [p for p in self.patterns if p.index("{text}") < p.index(MASK)]
            if not patterns:
                raise SslLabError(
                    "downstream=prompt with a causal model needs patterns with "
                    f"{MASK} after {{text}}; none of {self.patterns} has"
                )
        module = PromptModule(
            backbone,
            self._verbalizer_ids(data.tokenizer, data.num_classes),
            self.lr,
            self.optimizer,
            self.scheduler,
        )
        if self.few_shot:
            texts, labels = data.texts["train"]
            chosen = data.labelled_indices.tolist()
            train = self._dataset(
                data, [texts[i] for i in chosen], [labels[i] for i in chosen], causal, patterns
            )
            make_trainer(max_epochs=self.epochs).fit(module, data.labelled_loader(train))
        metrics: dict[str, Any] = {
            "prompt_few_shot": self.few_shot,
            "prompt_patterns": " | ".join(patterns),
            "prompt_verbalizers": " / ".join(self.verbalizers),
        }
        if not self.few_shot:
            metrics["n_labels"] = 0
        predictor = make_trainer(max_epochs=1, logger=False)
        accuracies = []
        for i, pattern in enumerate(self.patterns):  # keys keep the configured numbering
            if pattern not in patterns:
                continue
            texts, labels = data.texts["test"]
            # one more row, first (in the first batch, however few batches are predicted): the
            # pattern around an empty text, labelled -1 (the content-free input)
            test = self._dataset(data, ["", *texts], [-1, *labels], causal, [pattern])
            loader = DataLoader(test, batch_size=data.batch_size, collate_fn=data.collate_fn)
            outputs = predictor.predict(module, dataloaders=unrepeated(loader))
            scores, labels = gather_cat(
                torch.cat([s for s, _ in outputs]), torch.cat([y for _, y in outputs])
            )
            raw, calibrated = raw_and_calibrated_accuracy(scores, labels)
            metrics[f"test/acc_pattern{i}_uncalibrated"] = raw
            accuracies.append(calibrated if self.calibrate else raw)
            metrics[f"test/acc_pattern{i}"] = accuracies[-1]
        return {
            **metrics,
            "prompt_calibrated": self.calibrate,
            "score": sum(accuracies) / len(accuracies),
            "score_name": "test/acc",
        }
