"""Translation: an encoder-decoder warm-started from the pretrained text backbone (Rothe, Narayan
and Severyn 2020, "Leveraging Pre-trained Checkpoints for Sequence Generation Tasks", TACL).

- **Encoder**: the handed-over backbone, run the way it was pretrained (bidirectional after
  ``mlm``; causal, banded or backward after ``clm``: the backbone carries its reading).
- **Decoder**: the same checkpoint run causally, with a cross-attention layer added after the
  self-attention of each layer, initialised fresh (the only new weights besides nothing: the
  decoder's output layer is the backbone's own language-model head, tied to its embeddings).
  A backbone pretrained backward decodes backward too (the target's tokens right to left, then
  put back in order); one with ``context=K`` keeps its band.
- **Copy, not share** (``share=false``, the default): Rothe et al. find sharing the encoder's and
  decoder's weights about as good with half the parameters, but here the decoder does a different
  job from the encoder (it runs causally over the other language, attends to the source) and the
  parameter count is not what limits a small model on a CPU: each side starts from the checkpoint
  and moves on its own. ``share=true`` ties them (the decoder is the encoder module).
- **One checkpoint.** One bilingual backbone, pretrained on the monolingual text of both
  languages with one joint tokenizer (``data=zh_en``), initialises both sides, so the
  one-checkpoint hand-off (``backbone.safetensors``) stays the whole contract: no second
  checkpoint, no second tokenizer.

Training is teacher forcing with label smoothing on the train pairs, with finetune's freeze
policy (``freeze``, ``trainable_blocks``, ``backbone_lr_scale``, ``layer_decay``) applied to the
encoder's and the decoder's blocks alike; the cross-attention layers train at ``lr``. Decoding is
greedy (``beam=1``) or beam search, batched, up to ``max_new_tokens``. Scores: sacreBLEU-compatible
BLEU (torchmetrics; tokenizer ``zh`` for a Chinese target, ``13a`` otherwise) and chrF
(``n_word_order=0``, sacreBLEU's chrF), both reported 0-100 as sacreBLEU does (torchmetrics
returns 0-1). The run directory gets ``translator.safetensors`` (for ``ssl-lab-predict
--translate``) and ``translations.md`` (test sources, references and outputs).
"""

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.text import chrf_score, sacre_bleu_score

from ssl_lab.backbones.checkpoint import save_backbone
from ssl_lab.backbones.transformer import TextTransformer, banded_causal_mask, reverse_real_tokens
from ssl_lab.data.tokenizer import METADATA_KEY as TOKENIZER_KEY
from ssl_lab.data.tokenizer import TextTokenizer
from ssl_lab.downstream.classifier import block_lr_scales
from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.optim import configure_optimizers
from ssl_lab.ranks import unrepeated

TRANSLATOR_FILE = "translator.safetensors"
TRANSLATIONS_FILE = "translations.md"


def transformer_config(backbone: nn.Module) -> dict[str, Any]:
    """The arguments that rebuild ``backbone`` (a ``TextTransformer``), for the translator file."""
    if not isinstance(backbone, TextTransformer):
        raise SslLabError(
            f"downstream=translate builds its decoder from backbone=transformer, not "
            f"{type(backbone).__name__}"
        )
    layer = backbone.layers[0]
    return {
        "_target_": "ssl_lab.backbones.transformer.TextTransformer",
        "vocab_size": backbone.tokens.num_embeddings,
        "max_length": backbone.max_length,
        "width": backbone.out_dim,
        "depth": len(backbone.layers),
        "heads": layer.self_attn.num_heads,
        "mlp_ratio": layer.linear1.out_features // backbone.out_dim,
        "dropout": backbone.dropout.p,
        "causal": backbone.causal,
        "pooling": backbone.pooling,
        "pad_id": backbone.pad_id,
        "context": backbone.context,
        "direction": backbone.direction,
    }


class CrossAttention(nn.Module):
    """Pre-norm cross-attention with its residual, as the backbone's layers do self-attention."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm(x)
        attended = self.attention(
            h, memory, memory, key_padding_mask=memory_padding, need_weights=False
        )[0]
        return x + self.dropout(attended)


class Translator(nn.Module):
    """Encoder = ``backbone``; decoder = a copy of it (or the same module with ``share``) whose
    layers run causally with a fresh ``CrossAttention`` after each self-attention."""

    def __init__(self, backbone: TextTransformer, share: bool = False) -> None:
        super().__init__()
        self.encoder, self.share = backbone, share
        if not share:
            self.decoder_copy = copy.deepcopy(backbone)
        layer = backbone.layers[0]
        self.cross = nn.ModuleList(
            CrossAttention(backbone.out_dim, layer.self_attn.num_heads, backbone.dropout.p)
            for _ in backbone.layers
        )

    @property
    def decoder(self) -> TextTransformer:
        return self.encoder if self.share else self.decoder_copy

    @property
    def backward(self) -> bool:
        """The decoder reads the target right to left (a backbone pretrained backward)."""
        return self.decoder.direction == "backward"

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, Ls, D), its padding (B, Ls), True where padding)."""
        return self.encoder.forward_features(source), source == self.encoder.pad_id

    def decode(
        self, target: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor
    ) -> torch.Tensor:
        """(B, Lt) decoder inputs -> (B, Lt, D) features, position t seeing inputs 0..t (the
        decoder's band, if it has one) and the whole source. Padding sits right of every real
        token, so causal rows never reach it and need no padding mask."""
        decoder, length = self.decoder, target.shape[1]
        if length > decoder.max_length:
            raise ValueError(f"{length} tokens, more than max_length={decoder.max_length}")
        positions = torch.arange(length, device=target.device)
        x = decoder.embedding_norm(decoder.tokens(target) + decoder.positions(positions))
        x = decoder.dropout(x)
        mask = banded_causal_mask(length, decoder.context, target.device).to(x.dtype)
        for layer, cross in zip(decoder.layers, self.cross):
            h = layer.norm1(x)
            x = x + layer.dropout1(layer.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0])
            x = cross(x, memory, memory_padding)
            h = layer.norm2(x)
            x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(h)))))
        return decoder.norm(x)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, Lt, vocab) scores of the token after each decoder input."""
        memory, padding = self.encode(source)
        return self.decoder.lm_head(self.decode(target, memory, padding))


def decoder_order(target: torch.Tensor, pad_id: int, backward: bool) -> torch.Tensor:
    """Target ids in the order the decoder reads them: as they are, or reversed (a backward
    decoder starts from [SEP] and ends at [CLS], as its backbone read text in pretraining)."""
    return target.gather(1, reverse_real_tokens(target, pad_id)) if backward else target


@torch.no_grad()
def beam_search(
    model: Translator,
    source: torch.Tensor,
    start: int,
    stop: int,
    banned: Sequence[int],
    vocab_size: int,
    beam: int = 4,
    max_new_tokens: int = 64,
    length_penalty: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (B, T), log-probabilities (B,)) of the best hypothesis per source, batched: each
    source keeps ``beam`` hypotheses (``beam=1``: greedy), ranked in the end by log-probability
    / length ** ``length_penalty``. Tokens start after ``start`` and end with ``stop`` (or at
    the length limit), then padding. ``banned`` tokens are never produced."""
    pad = model.encoder.pad_id
    batch, device = len(source), source.device
    memory, padding = model.encode(source)
    memory = memory.repeat_interleave(beam, 0)
    padding = padding.repeat_interleave(beam, 0)
    tokens = torch.full((batch * beam, 1), start, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # one live hypothesis to begin with, not beam copies of it
    finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    after_stop = torch.full((vocab_size,), float("-inf"), device=device)
    after_stop[pad] = 0.0  # a finished hypothesis goes on with padding, at no cost
    limit = min(max_new_tokens, model.decoder.max_length - 1)
    for _ in range(limit):
        features = model.decode(tokens, memory, padding)[:, -1]
        logits = model.decoder.lm_head(features)[:, :vocab_size].float()
        logits[:, list(banned)] = float("-inf")
        log_p = logits.log_softmax(-1).view(batch, beam, vocab_size)
        log_p = torch.where(finished.unsqueeze(-1), after_stop, log_p)
        best, index = (scores.unsqueeze(-1) + log_p).view(batch, -1).topk(beam, dim=1)
        origin, token = index // vocab_size, index % vocab_size
        history = tokens.view(batch, beam, -1).gather(
            1, origin.unsqueeze(-1).expand(-1, -1, tokens.shape[1])
        )
        tokens = torch.cat([history, token.unsqueeze(-1)], -1).view(batch * beam, -1)
        finished = finished.gather(1, origin) | (token == stop)
        scores = best
        if bool(finished.all()):
            break
    tokens = tokens.view(batch, beam, -1)[:, :, 1:]
    lengths = (tokens != pad).sum(-1).clamp_min(1).to(scores.dtype)
    chosen = (scores / lengths**length_penalty).argmax(1)
    rows = torch.arange(batch, device=device)
    return tokens[rows, chosen], scores[rows, chosen]


def detokenize(tokenizer: TextTokenizer, tokens: Sequence[int], backward: bool) -> str:
    """The text of generated ``tokens`` (up to the stop token), in reading order."""
    specials = set(tokenizer.vocab.special_ids)
    content = []
    for token in tokens:
        if token in specials:
            if token == tokenizer.ids["pad"] or token in (
                tokenizer.ids.get("sep"),
                tokenizer.ids.get("cls"),
            ):
                break
            continue
        content.append(int(token))
    return tokenizer.decode(content[::-1] if backward else content)


def translate(
    model: Translator,
    tokenizer: TextTokenizer,
    sources: Sequence[str],
    beam: int = 4,
    max_new_tokens: int = 64,
    length_penalty: float = 1.0,
    batch_size: int = 64,
) -> list[str]:
    """Translations of ``sources`` (``ssl-lab-predict --translate``; the model in eval mode)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(sources), batch_size):
        ids = tokenizer.encode(list(sources[i : i + batch_size])).to(device)
        start, stop, banned, size = search_tokens(tokenizer, model.backward)
        tokens, _ = beam_search(
            model, ids, start, stop, banned, size, beam, max_new_tokens, length_penalty
        )
        out += [detokenize(tokenizer, row.tolist(), model.backward) for row in tokens]
    return out


def search_tokens(tokenizer: TextTokenizer, backward: bool) -> tuple[int, int, list[int], int]:
    """(start, stop, banned, vocabulary size) for decoding with ``tokenizer``'s ids."""
    cls, sep = tokenizer.ids["cls"], tokenizer.ids["sep"]
    start, stop = (sep, cls) if backward else (cls, sep)
    banned = [i for i in tokenizer.vocab.special_ids if i != stop]
    return start, stop, banned, tokenizer.vocab_size


def bleu_tokenizer(language: str) -> str:
    """sacreBLEU's tokenizer for a target language: ``zh`` for Chinese, ``13a`` otherwise."""
    return "zh" if language.lower().startswith("zh") else "13a"


def corpus_scores(outputs: Sequence[str], references: Sequence[str], language: str) -> dict:
    """BLEU and chrF of ``outputs`` against one reference each, 0-100 (sacreBLEU's scale)."""
    refs = [[r] for r in references]
    bleu = sacre_bleu_score(list(outputs), refs, tokenize=bleu_tokenizer(language))
    chrf = chrf_score(list(outputs), refs, n_word_order=0)
    return {"test/bleu": 100 * float(bleu), "test/chrf": 100 * float(chrf)}


class TranslationModule(pl.LightningModule):
    """Teacher forcing with label smoothing; the freeze policy of finetune on the encoder's and
    the decoder's blocks; ``predict_step`` decodes."""

    def __init__(
        self,
        model: Translator,
        tokenizer: TextTokenizer,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.1,
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
        beam: int = 4,
        max_new_tokens: int = 64,
        length_penalty: float = 1.0,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer, self.lr = model, tokenizer, lr
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing, self.backbone_lr_scale = label_smoothing, backbone_lr_scale
        self.search = (beam, max_new_tokens, length_penalty)
        self.pad = tokenizer.ids["pad"]
        frozen_whole = freeze == "frozen" or backbone_lr_scale <= 0
        sides = [model.encoder] if model.share else [model.encoder, model.decoder]
        self._blocks: list[tuple[nn.Module, float]] = []
        for side in sides:
            blocks = [] if frozen_whole else list(side.blocks())
            scales = block_lr_scales(
                len(blocks), freeze, trainable_blocks, backbone_lr_scale, layer_decay
            )
            side.requires_grad_(freeze == "full" and not frozen_whole)
            for block, scale in zip(blocks, scales):
                block.requires_grad_(scale > 0)
            self._blocks += list(zip(blocks, scales))
        self.n_trainable_blocks = sum(s > 0 for _, s in self._blocks)
        self._frozen = sides if frozen_whole else [b for b, s in self._blocks if s == 0]

    def train(self, mode: bool = True) -> "TranslationModule":
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def on_train_start(self) -> None:
        self.train()  # Lightning restores, but never sets, training mode

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        source, target = batch
        target = decoder_order(target, self.pad, self.model.backward)
        scores = self.model(source, target[:, :-1])[..., : self.tokenizer.vocab_size]
        labels = torch.where(target[:, 1:] != self.pad, target[:, 1:], IGNORE)
        return F.cross_entropy(
            scores.flatten(0, 1).float(),
            labels.flatten(),
            ignore_index=IGNORE,
            label_smoothing=self.label_smoothing,
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log(
            "transfer/train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0])
        )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss = self._loss(batch)
        self.log("transfer/val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        source = batch[0]
        tokens, _ = beam_search(
            self.model, source, *search_tokens(self.tokenizer, self.model.backward), *self.search
        )
        return tokens.cpu()

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": list(self.model.cross.parameters())}]
        groups += [
            {"params": list(b.parameters()), "lr_scale": s} for b, s in self._blocks if s > 0
        ]
        in_groups = {id(p) for g in groups for p in g["params"]}
        outside = [p for p in self.model.parameters() if p.requires_grad and id(p) not in in_groups]
        groups.append({"params": outside, "lr_scale": self.backbone_lr_scale})
        return configure_optimizers(groups, self.lr, self.optimizer_factory, self.scheduler_factory)


def translations_table(
    sources: Sequence[str], references: Sequence[str], outputs: Sequence[str], title: str
) -> str:
    """A Markdown table of test sources, references and the model's outputs."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [f"# {title}", "", "| # | source | reference | output |", "|---|---|---|---|"]
    rows += [
        f"| {i} | {cell(s)} | {cell(r)} | {cell(o)} |"
        for i, (s, r, o) in enumerate(zip(sources, references, outputs), 1)
    ]
    return "\n".join(rows) + "\n"


class Translate(DownstreamTask):
    def __init__(
        self,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        run_dir: str | None = None,
        scheduler: Callable[..., Any] | None = None,
        share: bool = False,
        label_smoothing: float = 0.1,
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
        beam: int = 4,
        max_new_tokens: int = 64,
        length_penalty: float = 1.0,
        shown: int = 30,
    ) -> None:
        if beam < 1 or max_new_tokens < 1:
            raise SslLabError(f"downstream.beam={beam}, max_new_tokens={max_new_tokens}: >= 1")
        self.epochs, self.lr, self.optimizer, self.scheduler = epochs, lr, optimizer, scheduler
        self.run_dir = Path(run_dir) if run_dir is not None else None  # None: write nothing
        self.share, self.shown = share, shown
        self.settings = {
            "label_smoothing": label_smoothing,
            "backbone_lr_scale": backbone_lr_scale,
            "freeze": freeze,
            "trainable_blocks": trainable_blocks,
            "layer_decay": layer_decay,
            "beam": beam,
            "max_new_tokens": max_new_tokens,
            "length_penalty": length_penalty,
        }

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        if not hasattr(data, "pairs"):
            raise SslLabError(
                f"downstream=translate needs sentence pairs (data=zh_en, parallel_tsv), but "
                f"data={data.name} holds labelled texts"
            )
        config = transformer_config(backbone)
        model = Translator(backbone, self.share)
        module = TranslationModule(
            model, data.tokenizer, self.lr, self.optimizer, self.scheduler, **self.settings
        )
        trainer = make_trainer(max_epochs=self.epochs)
        trainer.fit(
            module,
            train_dataloaders=data.train_dataloader(),
            val_dataloaders=data.pair_loader("val"),
        )
        logged = trainer.callback_metrics
        module.eval()
        predictor = make_trainer(max_epochs=1, logger=False)
        batches = predictor.predict(module, dataloaders=unrepeated(data.pair_loader("test")))
        tokens = [row.tolist() for batch in batches for row in batch]
        outputs = [detokenize(data.tokenizer, t, model.backward) for t in tokens]
        sources, references = data.pairs["test"]
        sources, references = sources[: len(outputs)], references[: len(outputs)]
        metrics = corpus_scores(outputs, references, data.target_language)
        if predictor.is_global_zero and self.run_dir is not None:
            self._write(model, data, config, sources, references, outputs, metrics)
        return {
            **metrics,
            "score": metrics["test/bleu"],
            "score_name": "test/bleu",
            "scale": "0-100 (sacreBLEU's; torchmetrics gives 0-1)",
            "bleu_tokenize": bleu_tokenizer(data.target_language),
            "translation": data.direction,
            "test_pairs": len(outputs),
            "transfer_train_loss": float(logged.get("transfer/train_loss", float("nan"))),
            "transfer_val_loss": float(logged.get("transfer/val_loss", float("nan"))),
            "share": self.share,
            "trainable_blocks": module.n_trainable_blocks,
            **{k: v for k, v in self.settings.items() if k != "trainable_blocks"},
        }

    def _write(self, model, data, config, sources, references, outputs, metrics) -> None:
        """``translator.safetensors`` (weights, how to rebuild them, the tokenizer) and
        ``translations.md`` in the run directory."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_backbone(
            model,
            self.run_dir / TRANSLATOR_FILE,
            {"backbone": config, "share": self.share},
            {
                "task": "translate",
                "direction": data.direction,
                "data": data.name,
                **{k: self.settings[k] for k in ("beam", "max_new_tokens", "length_penalty")},
            },
            {TOKENIZER_KEY: data.tokenizer.to_json()},
        )
        title = (
            f"{data.direction} on {data.name}: first {min(self.shown, len(outputs))} of "
            f"{len(outputs)} test pairs (BLEU {metrics['test/bleu']:.2f}, "
            f"chrF {metrics['test/chrf']:.2f}, 0-100)"
        )
        n = self.shown
        (self.run_dir / TRANSLATIONS_FILE).write_text(
            translations_table(sources[:n], references[:n], outputs[:n], title), encoding="utf-8"
        )


def load_translator(path: str | Path) -> tuple[Translator, TextTokenizer, dict[str, Any]]:
    """(translator in eval mode, its tokenizer, the facts stored with it) from a run directory
    of ``downstream=translate`` or its ``translator.safetensors``."""
    from ssl_lab.backbones.checkpoint import load_backbone_weights, read_config, read_meta
    from ssl_lab.data.tokenizer import load_tokenizer

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / TRANSLATOR_FILE
    if not path.is_file():
        raise SslLabError(f"no {TRANSLATOR_FILE} at {path.parent}: not a downstream=translate run")
    stored = read_config(path) or {}
    config = dict(stored.get("backbone") or {})
    if config.pop("_target_", None) != "ssl_lab.backbones.transformer.TextTransformer":
        raise SslLabError(f"{path}: not a translator saved by ssl-lab")
    model = Translator(TextTransformer(**config), bool(stored.get("share", False)))
    load_backbone_weights(model, path)
    return model.eval(), load_tokenizer(path, config["max_length"]), read_meta(path)
