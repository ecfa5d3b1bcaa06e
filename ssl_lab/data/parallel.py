"""Sentence pairs for translation (``data=zh_en``, ``data=parallel_tsv``): ``source<TAB>target``
files (more columns are ignored), read in one direction or the other.

- **Splits.** Each pair once; a fixed test set of whole pairs, and a val set, carved by
  ``split_seed`` unless a ``test_file`` is given. A train or val pair that shares a sentence, on
  either side, with the test set is dropped (``train_test_overlap_removed``). The transfer trains
  on the first ``train_pairs`` of the train split in an order fixed by ``seed`` (so the 500 are
  among the 2,000), or on all of it.
- **Pretraining text** is monolingual: the sentences of the train split, both sides, and the
  ``unlabelled_files`` (both languages: one joint tokenizer, one bilingual backbone), without
  any sentence of the test set, on either side (counted: ``test_overlap_found``,
  ``test_overlap_removed``). It does not depend on ``train_pairs`` or the direction, so
  neither changes the pretraining's cache entry.
- **Bad input** stops in one line naming the file and line: a line without a tab, or with an
  empty side; a missing file; an unknown direction. A pair longer than the backbone's
  ``max_length`` on either side is cut to it and counted (``pairs_cut``), never dropped.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset, default_collate

from ssl_lab.data.in_memory import UNLABELLED, carve_splits
from ssl_lab.data.text_readers import read_pairs, read_unlabelled
from ssl_lab.data.texts import InMemoryTextDataModule, normalise
from ssl_lab.data.tokenizer import TextTokenizer, make_tokenizer
from ssl_lab.errors import SslLabError

PAIR_SPLITS = ("train", "val", "test")


def directions(languages: Sequence[str]) -> tuple[str, str]:
    """The two directions a pair of languages can be read in: ``zh-en`` and ``en-zh``."""
    first, second = languages
    return f"{first}-{second}", f"{second}-{first}"


class TrimPairs:
    """Collate: stack, then cut from every token-id tensor of the batch (source, target, or a
    text's ids) the padding columns that all its rows have."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list) -> Any:
        batch = default_collate(examples)
        for i, ids in enumerate(batch):
            if ids.dtype == torch.long and ids.dim() == 2:
                used = (ids != self.pad_id).any(0).nonzero()
                batch[i] = ids[:, : int(used.max()) + 1 if len(used) else 1]
        return batch


class ParallelTextDataModule(InMemoryTextDataModule):
    """``pairs[split]``: (sources, targets) in the chosen direction; ``splits``: ``train``,
    ``pair_val`` and ``test`` hold (source ids, target ids), ``pretrain`` and ``val`` the
    monolingual text that pretraining reads (encoded on first use) and validates on."""

    num_classes = 0  # pairs carry no class labels

    def __init__(
        self,
        name: str,
        train_file: str,
        tokenizer: dict[str, Any],
        languages: Sequence[str] = ("src", "tgt"),
        direction: str = "src-tgt",
        test_file: str | None = None,
        train_pairs: int | None = None,
        modality: str = "text",
        batch_size: int = 64,
        fixed_epoch_length: bool | int = True,
        val_fraction: float = 0.05,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
        unlabelled_files: Sequence[Any] = (),
        drop_test_overlap: bool = True,
    ) -> None:
        super().__init__(
            name,
            0,
            tokenizer,
            modality,
            batch_size,
            fixed_epoch_length=fixed_epoch_length,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            seed=seed,
            num_workers=num_workers,
            unlabelled_files=unlabelled_files,
            drop_test_overlap=drop_test_overlap,
        )
        if len(languages) != 2 or direction not in directions(languages):
            raise SslLabError(
                f"data.direction={direction}: choose from {', '.join(directions(list(languages)))}"
                f" (data.languages={list(languages)})"
            )
        self.files = {"train": train_file, "test": test_file}
        self.languages, self.direction, self.train_pairs = list(languages), direction, train_pairs
        self.source_language, self.target_language = direction.split("-")
        self.pairs: dict[str, tuple[list[str], list[str]]] = {}
        self.pairs_cut = 0

    def load_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """Each split's pairs, columns in file order, each pair once; test first, carved from
        train by ``split_seed`` unless the corpus has a test file."""
        train = list(dict.fromkeys(read_pairs(self.files["train"])))
        if self.files["test"]:
            test = list(dict.fromkeys(read_pairs(self.files["test"])))
            indices = carve_splits(len(train), {"val": self.val_fraction}, self.split_seed)
            return {"test": test, **{s: [train[i] for i in indices[s]] for s in ("val", "train")}}
        indices = carve_splits(
            len(train), {"test": self.test_fraction, "val": self.val_fraction}, self.split_seed
        )
        return {split: [train[i] for i in indices[split]] for split in PAIR_SPLITS}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        pairs = self.load_pairs()
        test = {normalise(s) for pair in pairs["test"] for s in pair}
        self.train_test_overlap_removed = 0
        for split in ("train", "val"):
            kept = [p for p in pairs[split] if not {normalise(s) for s in p} & test]
            self.train_test_overlap_removed += len(pairs[split]) - len(kept)
            pairs[split] = kept
        for split in PAIR_SPLITS:
            if not pairs[split]:
                raise SslLabError(f"data={self.name}: the {split} split holds no pairs")
        flip = self.direction != directions(self.languages)[0]
        self.pairs = {
            split: ([p[flip] for p in rows], [p[not flip] for p in rows])
            for split, rows in pairs.items()
        }
        extra = [t for path in self.unlabelled_files for t in read_unlabelled(path)]
        sides = [s for pair in pairs["train"] for s in pair]
        pretraining = self._monolingual([*sides, *extra], test)
        self.tokenizer: TextTokenizer = make_tokenizer(self.tokenizer_spec, pretraining)
        val = list(dict.fromkeys(s for pair in pairs["val"] for s in pair))
        self.pretraining_texts = pretraining  # encoded when pretraining asks for them
        self.texts = {"val": (val, [UNLABELLED] * len(val))}
        self.use_tokenizer(self.tokenizer)
        order = np.random.default_rng(self.seed).permutation(len(pairs["train"]))
        count = len(order) if self.train_pairs is None else self.train_pairs
        if count > len(order):
            raise SslLabError(f"data.train_pairs={count}: the train split holds {len(order)} pairs")
        self.labelled_indices = np.sort(order[:count])

    def _monolingual(self, texts: Sequence[str], test: set[str]) -> list[str]:
        """Each text once, without the test set's sentences (counted, as for classification)."""
        return self._once_without_test(texts, test, text_of=lambda text: text)

    def use_tokenizer(self, tokenizer: TextTokenizer) -> None:
        """Token ids of the monolingual texts and of both sides of every pair, with
        ``tokenizer``; pairs cut to fit are counted."""
        super().use_tokenizer(tokenizer)  # the val texts; the pretraining text when asked for
        self.collate_fn = TrimPairs(tokenizer.ids["pad"])
        room = tokenizer.max_length - (len(tokenizer.encode(["a"])[0]) - len(tokenizer.pieces("a")))
        self.pairs_cut = 0
        for split, (sources, targets) in self.pairs.items():
            lengths = [
                [len(ids) for ids in tokenizer.pieces_batch(side)] for side in (sources, targets)
            ]
            self.pairs_cut += sum(max(a, b) > room for a, b in zip(*lengths))
            self.splits["pair_val" if split == "val" else split] = TensorDataset(
                tokenizer.encode(sources), tokenizer.encode(targets)
            )

    def unlabelled_dataloader(self) -> DataLoader:
        """The pretraining text, encoded on first use: a transfer from random init or from a
        cached pretraining never needs the ~170,000 texts of data=zh_en as ids."""
        if "pretrain" not in self.splits:
            texts = self.pretraining_texts
            self.splits["pretrain"] = TensorDataset(
                self.tokenizer.encode(texts), torch.full((len(texts),), UNLABELLED)
            )
        return super().unlabelled_dataloader()

    def labelled_dataset(self) -> Subset:
        """The train pairs the transfer learns from."""
        return Subset(self.splits["train"], self.labelled_indices.tolist())

    def pair_loader(self, split: str) -> DataLoader:
        """An evaluation loader of (source ids, target ids) batches: ``val`` or ``test``."""
        return self.loader(self.splits["pair_val" if split == "val" else split])
