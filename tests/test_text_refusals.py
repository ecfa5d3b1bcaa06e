"""Crossings that cannot work on text are refused before anything is built, naming both choices;
a backbone file cannot make ssl-lab-predict import anything outside ssl_lab.backbones."""

import pytest
from conftest import run_cli
from safetensors.torch import save_file

from ssl_lab.backbones.checkpoint import save_backbone
from ssl_lab.backbones.transformer import TextTransformer
from ssl_lab.errors import SslLabError
from ssl_lab.pipeline import check_compatible
from ssl_lab.predict import load_text_backbone

TEXT = ["data=reviews_zh", "backbone=transformer"]


@pytest.mark.parametrize(
    "overrides, cause",
    [
        (
            [*TEXT, "pretext=rotation"],
            "pretext=rotation works on image data, but data=reviews_zh is text",
        ),
        ([*TEXT, "pretext=jigsaw"], "pretext=jigsaw works on image data"),
        ([*TEXT, "pretext=inpainting"], "pretext=inpainting works on image data"),
        (["pretext=clm"], "pretext=clm works on text data, but data=digits is image"),
        (
            ["data=reviews_zh", "backbone=small_cnn", "pretext=mlm"],
            "backbone=small_cnn works on image data",
        ),
        (
            [*TEXT, "pretext=none", "downstream=prompt"],
            "downstream=prompt needs a language-model head, but pretext=none trains none",
        ),
        ([*TEXT, "pretext=supervised", "downstream=prompt"], "pretext=supervised trains none"),
        (
            [*TEXT, "pretext=mlm", "downstream=segmentation"],
            "downstream=segmentation works on image data",
        ),
    ],
)
def test_incompatible_text_choices_are_refused_naming_both(compose_cfg, overrides, cause):
    with pytest.raises(SslLabError, match=cause.replace("(", r"\(")):
        check_compatible(compose_cfg(*overrides))


def test_few_shot_prompting_trains_the_head_so_random_init_is_allowed(compose_cfg):
    check_compatible(
        compose_cfg(*TEXT, "pretext=none", "downstream=prompt", "downstream.few_shot=true")
    )  # the reference for PET's gain


def test_prompt_refuses_a_checkpoint_without_a_trained_language_model(compose_cfg, tmp_path):
    path = tmp_path / "backbone.safetensors"
    save_backbone(
        TextTransformer(30, max_length=8, width=8, depth=1, heads=1),
        path,
        {"_target_": "ssl_lab.backbones.transformer.TextTransformer"},
        {"pretext": "none"},
    )
    cfg = compose_cfg(*TEXT, "pretext=none", "downstream=prompt", f"backbone.checkpoint={path}")
    with pytest.raises(SslLabError, match="was not pretrained with mlm or clm"):
        check_compatible(cfg)


@pytest.mark.parametrize(
    "stored, given, fix",
    [
        (True, [], "set backbone.causal=true"),
        (False, ["backbone.causal=true"], "set backbone.causal=false"),
    ],
)
def test_a_checkpoint_run_the_other_way_than_it_was_pretrained_is_refused(
    compose_cfg, tmp_path, stored, given, fix
):
    path = tmp_path / "backbone.safetensors"
    save_backbone(
        TextTransformer(30, max_length=8, width=8, depth=1, heads=1, causal=stored),
        path,
        {"_target_": "ssl_lab.backbones.transformer.TextTransformer", "causal": stored},
        {"pretext": "clm" if stored else "mlm"},
    )
    cfg = compose_cfg(*TEXT, "pretext=none", f"backbone.checkpoint={path}", *given)
    with pytest.raises(SslLabError, match=f"was pretrained .*{fix}"):
        check_compatible(cfg)
    fixed = compose_cfg(
        *TEXT,
        "pretext=none",
        f"backbone.checkpoint={path}",
        f"backbone.causal={str(stored).lower()}",
    )
    check_compatible(fixed)


def test_rotation_on_text_fails_in_one_line_from_the_command_line(tmp_path):
    result = run_cli(tmp_path, *TEXT, "pretext=rotation", "logger=none")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ssl-lab: error: pretext=rotation works on image data, but data=reviews_zh is text"
    )


def test_a_backbone_file_naming_a_foreign_target_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "backbone.safetensors"
    save_backbone(
        TextTransformer(30, max_length=8, width=8, depth=1, heads=1),
        path,
        {"_target_": "os.system", "command": f"touch {marker}"},
        {"pretext": "mlm"},
    )
    with pytest.raises(SslLabError, match="refused backbone target 'os.system'"):
        load_text_backbone(path)
    assert not marker.exists()
    save_file({}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(SslLabError, match="does not say which backbone"):
        load_text_backbone(tmp_path / "plain.safetensors")
