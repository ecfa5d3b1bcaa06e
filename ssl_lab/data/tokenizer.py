"""Tokenizers for text backbones, built with the HF ``tokenizers`` library.

Trained on the pretraining text (``char``: one token per character, as BERT-Chinese does for
Chinese; ``wordpiece`` or ``bpe``: subwords, for space-separated languages), or loaded: from a
checkpoint of ours (the tokenizer travels inside the backbone file), a ``tokenizer.json``, or a
local Hugging Face model directory. Our own tokenizers put the special tokens first, in the order
of ``SPECIAL_TOKENS``, so [PAD] is 0.
"""

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from ssl_lab.backbones.schema import TOKENIZER_KINDS as KINDS
from ssl_lab.errors import SslLabError

CJK = "[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"  # Han and their punctuation
_SPACE_BY_CJK = re.compile(f"(?<={CJK}) | (?={CJK})")
_SPACED_APOSTROPHE = re.compile(r"(?<=\w) ' (?=\w)")  # "it ' s": pieces of a split "it's"
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
METADATA_KEY = "ssl_lab.tokenizer"  # where a backbone file carries its tokenizer


@dataclass(frozen=True)
class Vocabulary:
    """What models and pretext tasks need to know about token ids (plain values, no tokenizer)."""

    size: int
    pad_id: int
    mask_id: int
    special_ids: tuple[int, ...]
    continuation_ids: tuple[int, ...] = ()  # subword pieces that continue a word ("##ing")


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the roles of its special tokens and the length limit."""

    def __init__(self, tokenizer: Tokenizer, roles: dict[str, str | None], max_length: int) -> None:
        self.tokenizer, self.roles, self.max_length = tokenizer, roles, max_length
        self.ids = {
            role: (tokenizer.token_to_id(token) if token is not None else None)
            for role, token in roles.items()
        }
        if self.ids.get("pad") is None:
            raise SslLabError("the tokenizer has no padding token")
        tokenizer.no_padding()
        tokenizer.no_truncation()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def vocab(self) -> Vocabulary:
        special = sorted(
            {i for i in self.ids.values() if i is not None}
            | {
                self.tokenizer.token_to_id(t.content)
                for t in self.tokenizer.get_added_tokens_decoder().values()
                if t.special
            }
        )
        continuation: tuple[int, ...] = ()
        model = self.tokenizer.model
        if isinstance(model, models.WordPiece):
            prefix = model.continuing_subword_prefix
            continuation = tuple(
                sorted(i for t, i in self.tokenizer.get_vocab().items() if t.startswith(prefix))
            )
        return Vocabulary(
            self.vocab_size,
            self.ids["pad"],
            self.ids.get("mask") if self.ids.get("mask") is not None else -1,
            tuple(special),
            continuation,
        )

    def pieces(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: no special tokens added, no truncation."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def pieces_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``pieces`` of many texts at once (the library encodes them in parallel)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, L) token ids, each text wrapped in the special tokens of a single sequence
        ([CLS] ... [SEP]), cut to ``max_length`` and padded to the longest (the loaders trim
        each batch to its own longest)."""
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=self.ids["pad"], pad_token=self.roles["pad"])
        try:
            encodings = self.tokenizer.encode_batch(list(texts))
        finally:
            self.tokenizer.no_padding()
            self.tokenizer.no_truncation()
        return torch.tensor([e.ids for e in encodings], dtype=torch.long).reshape(
            len(encodings), -1
        )

    def token(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(token_id) or "?"

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens left out; subword decoders put a space between
        words, which Chinese does not have: those next to a Chinese character are removed, and
        those around an apostrophe inside a word ("it ' s" -> "it's")."""
        text = _SPACE_BY_CJK.sub("", self.tokenizer.decode(list(ids)))
        return _SPACED_APOSTROPHE.sub("'", text)

    def to_json(self) -> str:
        """Everything needed to rebuild this tokenizer (stored in the backbone file)."""
        return json.dumps(
            {
                "tokenizer": self.tokenizer.to_str(),
                "roles": self.roles,
                "max_length": self.max_length,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "TextTokenizer":
        spec = json.loads(text)
        return cls(Tokenizer.from_str(spec["tokenizer"]), spec["roles"], spec["max_length"])

    def save(self, directory: Path) -> None:
        """``tokenizer.json`` (the tokenizers library's own format) for other tools to read."""
        self.tokenizer.save(str(directory / "tokenizer.json"))


def _char_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int, normalizer: normalizers.Normalizer
) -> Tokenizer:
    """One token per character; the ``vocab_size`` most frequent characters (ties: by code
    point, so the same texts always give the same tokenizer), the rest [UNK]."""
    counts = Counter(
        ch for text in texts for ch in normalizer.normalize_str(text) if not ch.isspace()
    )
    ranked = sorted(
        (c for c in counts.items() if c[1] >= min_frequency), key=lambda c: (-c[1], c[0])
    )
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    for ch, _ in ranked[: max(0, vocab_size - len(vocab))]:
        vocab[ch] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def _subword_tokenizer(
    kind: str, texts: Iterable[str], vocab_size: int, min_frequency: int
) -> Tokenizer:
    special = list(SPECIAL_TOKENS.values())
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk"]))
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            show_progress=False,
        )
        tokenizer.decoder = decoders.WordPiece()
    else:
        tokenizer = Tokenizer(
            models.BPE(unk_token=SPECIAL_TOKENS["unk"], end_of_word_suffix="</w>")
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            end_of_word_suffix="</w>",
            show_progress=False,
        )
        tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    # each Chinese character a word of its own (as BERT's tokenizer does), so one subword
    # vocabulary serves Chinese and English alike (data=zh_en's joint tokenizer)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Split(Regex(CJK), "isolated")]
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _canonical_ids(tokenizer)


def _canonical_ids(tokenizer: Tokenizer) -> Tokenizer:
    """The trainers learn the same vocabulary (and merges) from the same text every time, but
    number it in hash order: renumber it, special tokens first, then in string order, so the
    same text always gives the same ids (cached pretraining and later transfer must agree)."""
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    special = list(SPECIAL_TOKENS.values())
    order = special + sorted(t for t in vocab if t not in special)
    spec["model"]["vocab"] = {token: i for i, token in enumerate(order)}
    return Tokenizer.from_str(json.dumps(spec))


def train_tokenizer(
    kind: str,
    texts: Sequence[str],
    vocab_size: int,
    max_length: int,
    min_frequency: int = 1,
    lowercase: bool = True,
) -> TextTokenizer:
    """A tokenizer fitted to ``texts`` (the pretraining text: never the test split)."""
    if kind not in KINDS:
        raise SslLabError(
            f"backbone.tokenizer.kind={kind}: choose from char, wordpiece, bpe "
            "(or set backbone.tokenizer.path to load one)"
        )
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    normalizer = normalizers.Sequence(steps)
    if kind == "char":
        tokenizer = _char_tokenizer(texts, vocab_size, min_frequency, normalizer)
    else:
        tokenizer = _subword_tokenizer(
            kind, (normalizer.normalize_str(t) for t in texts), vocab_size, min_frequency
        )
    tokenizer.normalizer = normalizer
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS.values()))
    cls, sep = SPECIAL_TOKENS["cls"], SPECIAL_TOKENS["sep"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )
    return TextTokenizer(tokenizer, dict(SPECIAL_TOKENS), max_length)


def load_hf_tokenizer(directory: Path) -> Any:
    """The fast tokenizer of a local Hugging Face model directory, loaded offline."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SslLabError(
            "loading a Hugging Face model directory needs transformers: pip install 'ssl_lab[hf]'"
        ) from None
    try:
        hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise SslLabError(
            f"{directory}: transformers finds no tokenizer there "
            f"({str(err).strip().splitlines()[0]})"
        ) from None
    if not hf.is_fast:
        raise SslLabError(f"{directory}: only fast (tokenizer.json) tokenizers are supported")
    if len(hf) <= len(hf.all_special_tokens):  # transformers 5 makes one of config.json alone
        raise SslLabError(
            f"{directory}: transformers finds no tokenizer there (it would have "
            "special tokens only)"
        )
    return hf


def hf_roles(hf: Any) -> dict[str, str | None]:
    """Our roles of a Hugging Face tokenizer's special tokens. GPT-style tokenizers have no
    padding token (they pad with end-of-text) and no [CLS] (begin-of-text takes its place)."""
    return {
        "pad": hf.pad_token or hf.eos_token,
        "unk": hf.unk_token,
        "cls": hf.cls_token or hf.bos_token,
        "sep": hf.sep_token,
        "mask": hf.mask_token,
    }


def _hf_tokenizer(directory: Path, max_length: int) -> TextTokenizer:
    from transformers import AutoConfig

    hf = load_hf_tokenizer(directory)
    # model_max_length is 1e30 when the tokenizer sets none: the model's position table decides
    limits = [max_length, hf.model_max_length]
    if (directory / "config.json").is_file():
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        limits.append(getattr(config, "max_position_embeddings", None) or max_length)
    return TextTokenizer(hf.backend_tokenizer, hf_roles(hf), min(limits))


def load_tokenizer(path: str | Path, max_length: int) -> TextTokenizer:
    """From a backbone file of ours, a ``tokenizer.json``, or a Hugging Face model directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _hf_tokenizer(path, max_length)
    if not path.is_file():
        raise SslLabError(f"backbone.tokenizer.path: no such file or directory: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get(METADATA_KEY)
        if stored is None:
            raise SslLabError(
                f"{path} carries no tokenizer: it was not saved by a text pretraining"
            )
        return TextTokenizer.from_json(stored)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the library raises a bare Exception for malformed files
        raise SslLabError(
            f"backbone.tokenizer.path: {path} is not a tokenizer.json ({err})"
        ) from None
    return TextTokenizer(tokenizer, dict(SPECIAL_TOKENS), max_length)


def make_tokenizer(spec: dict[str, Any], texts: Sequence[str]) -> TextTokenizer:
    """The tokenizer ``spec`` (``backbone.tokenizer``) names: loaded from ``path`` if set,
    else trained on ``texts``."""
    if spec.get("path"):
        tokenizer = load_tokenizer(spec["path"], spec["max_length"])
    else:
        tokenizer = train_tokenizer(
            spec["kind"],
            texts,
            spec["vocab_size"],
            spec["max_length"],
            spec.get("min_frequency", 1),
            spec.get("lowercase", True),
        )
    limit = spec.get("vocab_size")
    if limit is not None and tokenizer.vocab_size > limit:
        raise SslLabError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, more than "
            f"backbone.tokenizer.vocab_size={limit}"
        )
    return tokenizer
