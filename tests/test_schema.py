"""The config schema: every key of every group typed, bounded and documented in one place; a
mistake found in one line naming the key; choices without a schema of their own still checked."""

import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from ssl_lab.cache import pretrain_spec
from ssl_lab.choices import group_choices
from ssl_lab.cli import CONF_DIR
from ssl_lab.config_check import check_config, config_error
from ssl_lab.errors import SslLabError
from ssl_lab.schema import CLASSES, describe

# What a choice needs besides itself to compose: text data for text choices, a mandatory path.
NEEDS = {
    "data=tsv": ["data.train_file=train.tsv", "data.num_classes=2"],
    "data=parallel_tsv": ["data.train_file=pairs.tsv", "pretext=none"],
    "data=zh_en": ["pretext=none"],
    "backbone=hf": ["data=reviews_zh", "backbone.path=/models/bert"],
    "backbone=transformer": ["data=reviews_zh"],
    "pretext=mlm": ["data=reviews_zh"],
    "pretext=clm": ["data=reviews_zh"],
    "pretext=mae": ["backbone=vit_tiny"],
    "downstream=prompt": ["data=reviews_zh", "pretext=mlm"],
}
# Choices that name no schema of their own, on purpose: pretext=none ignores the optimizer keys a
# preset sets for its pretext; a trainer takes any Lightning argument (+trainer.x=...).
WITHOUT_SCHEMA = {"pretext=none", "trainer=cpu", "trainer=gpu", "trainer=ddp", "trainer=ddp_cpu"}


def checked(*overrides: str, dirs: str | None = None):
    """The composed config, checked; an SslLabError (one line) for a mistake."""
    extra = [f"hydra.searchpath=[file://{dirs}]"] if dirs else []
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            overrides = [*overrides, *extra, "paths.run_dir=/tmp/run"]  # a job's own directory
            cfg = compose("config", overrides, return_hydra_config=True)
    except Exception as err:
        raise config_error(err) or err from None
    HydraConfig.instance().set_config(cfg)  # as in a job: ${hydra:...}, ${sweep_group:} resolve
    with open_dict(cfg):
        del cfg["hydra"]  # a job's config has none
    check_config(cfg)
    return cfg


def test_every_field_of_every_schema_says_what_it_means_and_accepts():
    assert len(CLASSES) > 30
    for cls in CLASSES.values():
        for spec in dataclasses.fields(cls):
            assert spec.metadata.get("help"), f"{cls.__name__}.{spec.name} has no help"
            assert describe(spec), f"{cls.__name__}.{spec.name}"


CHOICES = [
    f"{group}={name}"
    for group, names in group_choices([CONF_DIR]).items()
    if group in ("data", "backbone", "pretext", "downstream", "trainer", "logger", "paths")
    for name in names
]


@pytest.mark.parametrize("choice", CHOICES)
def test_every_choice_names_its_schema_and_its_config_passes_it(choice):
    cfg = checked(*NEEDS.get(choice, []), choice)
    group = choice.split("=")[0]
    if group == "logger":
        nodes = list(cfg.logger.values())
    else:
        nodes = [cfg[group]] + (
            [cfg.pretext.task] if group == "pretext" and cfg.pretext.task else []
        )
    typed = all(dataclasses.is_dataclass(OmegaConf.get_type(node)) for node in nodes)
    assert typed == (choice not in WITHOUT_SCHEMA), choice


@pytest.mark.parametrize(
    "overrides, refusal",
    [
        (["pretext.lr=abc"], "pretext.lr=abc: a number > 0"),  # at composition
        (["pretext.epochs=-1"], "pretext.epochs=-1: an integer >= 0"),  # by the check
        (["pretext.lr=1e300"], "pretext.lr=1e+300: a number > 0 (finite, within float32)"),
        (["pretext.lr=nan"], "pretext.lr=nan: a number > 0"),
        (["backbone.widths=[]"], "backbone.widths=[]: a non-empty list of integers >= 1"),
        (["downstream.lr=${data.name}"], "downstream.lr=digits: a number > 0"),
        (["pretext.optimizer=adam"], "pretext.optimizer=adam: a node with _target_ and"),
        (["nonfinite=maybe"], "nonfinite=maybe: one of: stop, skip"),
        (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0: an integer >= 1"),
        (
            ["data.labels_per_class=5", "data.label_fraction=0.5"],
            "data.label_fraction=0.5: null when",
        ),
        (["data=tsv"], "data.num_classes=???: mandatory"),
        (["pretext.lr=${nowhere}"], "pretext.lr=${nowhere}: Interpolation key 'nowhere' not found"),
        (
            ["pretext.task.grid=40", "pretext=jigsaw"],
            "pretext.task.grid=40: at most data.size (32)",
        ),
        (
            ["pretext=jigsaw", "pretext.task.grid=2"],
            "pretext.task.num_permutations=100: at most 24",
        ),
        (
            ["data=reviews_zh", "backbone.heads=3"],
            "backbone.heads=3: an integer >= 1 that divides backbone.width (128)",
        ),
        (
            ["downstream=fewshot", "downstream.ways=11"],
            "downstream.ways=11: an integer >= 2 and <= data.num_classes (10)",
        ),
        (
            ["backbone.in_channels=3"],
            "backbone.in_channels=3: an integer equal to data.channels (1)",
        ),
        (
            ["data.channels=3", "backbone.in_channels=1"],
            "backbone.in_channels=1: an integer equal to data.channels (3)",
        ),
        (
            ["experiment=mlm_zh_all", "downstream=prompt"],
            "downstream.backbone_lr_scale=0.1: downstream has no key backbone_lr_scale "
            "(remove it: ~downstream.backbone_lr_scale)",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_the_key_and_what_it_accepts(overrides, refusal):
    with pytest.raises(SslLabError) as caught:
        checked(*overrides)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(refusal), str(caught.value)


def test_interpolations_appends_and_presets_keep_working():
    cfg = checked("pretext.lr=${downstream.lr}", "+pretext.snapshot_epochs=[1,2]")
    assert cfg.pretext.lr == cfg.downstream.lr and list(cfg.pretext.snapshot_epochs) == [1, 2]
    with pytest.raises(SslLabError, match=r"pretext.snapshot_epochs=\[1,0\]"):
        checked("+pretext.snapshot_epochs=[1,0]")
    checked("experiment=mlm_zh_all", "downstream=prompt", "~downstream.backbone_lr_scale")
    checked("experiment=rotnet_cifar10_semisup", "pretext=none")  # its lr is ignored, not refused


def test_a_choice_without_a_schema_of_its_own_is_checked_by_its_groups(tmp_path):
    (tmp_path / "pretext").mkdir()
    (tmp_path / "pretext" / "mine.yaml").write_text(
        "_target_: ssl_lab.pretext.module.PretextModule\nname: mine\nmodality: image\n"
        "epochs: -1\nlr: 1e-3\noptimizer: {_target_: torch.optim.AdamW, _partial_: true}\n"
        "scheduler: null\nmy_own_key: 3\n"
        "task: {_target_: ssl_lab.pretext.rotation.RotationPrediction}\n"
    )
    with pytest.raises(SslLabError, match=r"^pretext.epochs=-1: an integer >= 0$"):
        checked("pretext=mine", dirs=tmp_path)
    with pytest.raises(SslLabError, match=r"^pretext.lr=abc: a number > 0$"):
        checked("pretext=mine", "pretext.epochs=1", "pretext.lr=abc", dirs=tmp_path)
    assert checked("pretext=mine", "pretext.epochs=1", dirs=tmp_path).pretext.my_own_key == 3


def test_a_bad_value_in_a_users_preset_names_the_key_and_the_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    preset = tmp_path / "experiment" / "fast.yaml"
    preset.write_text("# @package _global_\npretext:\n  lr: fast\n")
    with pytest.raises(SslLabError, match=r"^pretext.lr=fast: a number > 0 \(in experiment/fast"):
        checked("experiment=fast", dirs=tmp_path)


def test_cache_keys_made_before_the_schema_stay_the_same():
    """The schema adds only snapshot_epochs (null) to a pretext; the cache key leaves it out."""
    assert "snapshot_epochs" not in pretrain_spec(checked())["pretext"]
    kept = pretrain_spec(checked("+pretext.snapshot_epochs=[2]"))["pretext"]
    assert kept["snapshot_epochs"] == [2]
