"""MLM pretraining throughput: ssl-lab (``pretext=mlm`` through ``pipeline.trainer_factory``'s
Lightning trainer) against Hugging Face transformers (a ``BertForMaskedLM`` of the same size,
``DataCollatorForLanguageModeling`` masking each batch, a plain PyTorch loop), on the same
batches of reviews_zh token ids, in one process. transformers is a benchmark-only dependency
(the ``hf`` extra).

    python benchmarks/mlm_vs_hf.py [--batches 24] [--rounds 2] [--width 128] [--depth 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import WARMUP, Batches, StepClock, alternate, config, machine
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger
from transformers import (
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerFast,
)

from ssl_lab.build import build
from ssl_lab.pipeline import trainer_factory
from ssl_lab.pretext.module import PretextModule


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=24, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ssl_lab_bench_"))
    cfg = config(
        "data=reviews_zh",
        "backbone=transformer",
        "pretext=mlm",
        f"backbone.width={args.width}",
        f"backbone.depth={args.depth}",
        f"paths.output_dir={tmp}",
        f"paths.run_dir={tmp}/run",
    )
    data = build(cfg, "data")
    data.setup()
    tokenizer = data.tokenizer
    pad = tokenizer.ids["pad"]
    torch.manual_seed(0)
    batches = [
        batch for _, batch in zip(range(args.batches + WARMUP), data.unlabelled_dataloader())
    ]
    examples = [[{"input_ids": row[row != pad].tolist()} for row in batch[0]] for batch in batches]
    vocab = tokenizer.vocab
    net = cfg.backbone
    print(
        f"{machine()}; reviews_zh, batch {data.batch_size}, width {net.width}, depth {net.depth},"
        f" heads {net.heads}, vocab {vocab.size}, {args.batches} timed steps after {WARMUP}, "
        f"mean width {sum(b[0].shape[1] for b in batches) / len(batches):.0f} tokens"
    )

    def real_tokens(batch: tuple) -> int:
        return int((batch[0] != pad).sum())

    def ours() -> float:
        torch.manual_seed(0)
        backbone = build(cfg, "backbone")
        task = instantiate(cfg.pretext.task, feature_dim=backbone.out_dim, vocab=vocab)
        module = PretextModule(
            backbone,
            task,
            cfg.pretext.lr,
            instantiate(cfg.pretext.optimizer),
            instantiate(cfg.pretext.scheduler),
        )
        clock = StepClock(WARMUP, real_tokens)
        make_trainer = trainer_factory(
            cfg, [CSVLogger(str(tmp / "csv"))], tmp / "lightning", (clock,)
        )
        make_trainer(max_epochs=1).fit(module, train_dataloaders=Batches(batches))
        assert clock.steps == args.batches - 1  # intervals between timed batch starts
        return clock.rate

    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.tokenizer,
        model_max_length=tokenizer.max_length,
        **{f"{role}_token": token for role, token in tokenizer.roles.items() if token},
    )
    collator = DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15)
    bert_config = BertConfig(
        vocab_size=vocab.size,
        hidden_size=net.width,
        num_hidden_layers=net.depth,
        num_attention_heads=net.heads,
        intermediate_size=net.mlp_ratio * net.width,
        max_position_embeddings=net.max_length,
        hidden_dropout_prob=net.dropout,
        attention_probs_dropout_prob=net.dropout,
        pad_token_id=pad,
    )

    def hf() -> float:
        torch.manual_seed(0)
        model = BertForMaskedLM(bert_config).train()
        opt = instantiate(cfg.pretext.optimizer)(model.parameters(), lr=cfg.pretext.lr)
        tokens = 0
        for i, rows in enumerate(examples):
            if i == WARMUP:
                start = time.perf_counter()
            batch = collator(rows)  # masking (and padding) per batch, as HF's Trainer does
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= WARMUP:
                tokens += int(batch["attention_mask"].sum())
        return tokens / (time.perf_counter() - start)

    params = sum(p.numel() for p in build(cfg, "backbone").parameters())
    print(
        f"parameters: ssl-lab {params:,}, HF BertForMaskedLM "
        f"{sum(p.numel() for p in BertForMaskedLM(bert_config).parameters()):,}"
    )
    best = alternate(args.rounds, {"ssl-lab (tokens/s)": ours, "HF transformers (tokens/s)": hf})
    ratio = best["ssl-lab (tokens/s)"] / best["HF transformers (tokens/s)"]
    print(
        f"RESULT ratio={ratio:.3f} ssl_lab_tokens_per_s={best['ssl-lab (tokens/s)']:.0f} "
        f"hf_tokens_per_s={best['HF transformers (tokens/s)']:.0f}"
    )


if __name__ == "__main__":
    main()
