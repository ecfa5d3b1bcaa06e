"""The two more readings of causal language modelling: from the recent past (a banded mask,
``pretext.task.context=K``) and from the present, the past (``pretext.task.direction=backward``);
both recorded in the backbone file, read back the same way, refused when read otherwise."""

import pytest
import torch
from safetensors import safe_open

from ssl_lab.backbones.checkpoint import read_config, read_meta
from ssl_lab.backbones.transformer import TextTransformer, banded_causal_mask, reverse_real_tokens
from ssl_lab.cache import pretrain_spec
from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.pipeline import check_compatible
from ssl_lab.pretext.clm import CausalLanguageModel

VOCAB = Vocabulary(size=50, pad_id=0, mask_id=4, special_ids=(0, 1, 2, 3, 4))
TINY_TEXT = [
    "logger=none",
    "monitor.knn=false",
    "data=reviews_zh",
    "backbone.width=32",
    "backbone.depth=1",
    "backbone.heads=2",
    "backbone.max_length=32",
    "pretext=clm",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=2",
    "downstream=finetune",
    "downstream.epochs=1",
    "data.fixed_epoch_length=64",
    "data.labels_per_class=20",
]


def _model(depth: int = 1, **reading) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(
        VOCAB.size, max_length=24, width=32, depth=depth, heads=2, causal=True, **reading
    ).eval()


def _changed_positions(model: TextTransformer, ids: torch.Tensor, at: int) -> list[int]:
    """The positions whose features change when token ``at`` of each row changes."""
    other = ids.clone()
    other[:, at] = (ids[:, at] + 7) % (VOCAB.size - 5) + 5
    with torch.no_grad():
        diff = (model.forward_features(ids) - model.forward_features(other)).abs().amax((0, 2))
    return (diff > 1e-6).nonzero().flatten().tolist()


def test_the_banded_mask_lets_a_position_see_itself_and_k_tokens_back_only():
    allowed = banded_causal_mask(6, 2) == 0
    for i in range(6):
        assert allowed[i].nonzero().flatten().tolist() == list(range(max(0, i - 2), i + 1))
    assert (banded_causal_mask(6, None) == 0).equal(torch.ones(6, 6).tril().bool())


@pytest.mark.parametrize("depth", [1, 2])
def test_a_position_never_sees_tokens_more_than_k_back_per_layer(depth):
    ids = torch.randint(5, VOCAB.size, (3, 20))
    changed = _changed_positions(_model(depth, context=3), ids, at=6)
    assert changed == list(range(6, min(20, 6 + 3 * depth + 1)))  # stacked layers: depth x K
    assert _changed_positions(_model(depth), ids, at=6) == list(range(6, 20))  # the whole past


def test_a_banded_model_gives_finite_features_on_padded_rows():
    ids = torch.randint(5, VOCAB.size, (2, 20))
    ids[0, 5:] = VOCAB.pad_id
    features = _model(2, context=2).forward_features(ids)
    assert torch.isfinite(features).all()


def test_reversing_real_tokens_keeps_padding_and_undoes_itself():
    ids = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 9, 3, 0, 0, 0]])
    order = reverse_real_tokens(ids, 0)
    assert ids.gather(1, order).tolist() == [[3, 8, 7, 2, 0, 0], [3, 9, 2, 0, 0, 0]]
    assert ids.gather(1, order).gather(1, order).equal(ids)


def test_a_backward_model_predicts_the_previous_token_from_the_present_and_after():
    task = CausalLanguageModel(32, VOCAB, direction="backward")
    ids = torch.tensor([[2, 7, 8, 9, 3, 0], [2, 10, 11, 3, 0, 0]])
    inputs, targets = task.make_batch((ids, torch.zeros(2)))
    # position t (1..L-1) is scored against token t-1; padding positions are not scored
    assert targets.view(2, -1).tolist() == [
        [2, 7, 8, 9, IGNORE],
        [2, 10, 11, IGNORE, IGNORE],
    ]
    model = _model(direction="backward")
    ids = torch.randint(5, VOCAB.size, (3, 12))
    assert _changed_positions(model, ids, at=6) == list(range(7))  # t sees t..end, never t-1
    scores = task(model, ids)
    expected = model.lm_logits(ids)[:, 1:].flatten(0, 1)[:, : VOCAB.size]
    assert torch.allclose(scores, expected, atol=1e-6)


def test_the_task_refuses_a_backbone_that_reads_otherwise():
    task = CausalLanguageModel(32, VOCAB, context=4)
    with pytest.raises(SslLabError, match="pretext.task.context=4, direction=forward: the"):
        task(_model(), torch.randint(5, VOCAB.size, (2, 6)))
    with pytest.raises(SslLabError, match="backbone.causal=false"):
        TextTransformer(VOCAB.size, width=32, heads=2, direction="backward")


def test_default_clm_cache_keys_stay_as_they_were(compose_cfg):
    spec = pretrain_spec(compose_cfg("data=reviews_zh", "pretext=clm"))
    assert "context" not in spec["backbone"] and "direction" not in spec["backbone"]
    assert spec["pretext"]["task"] == {"_target_": "ssl_lab.pretext.clm.CausalLanguageModel"}
    banded = pretrain_spec(compose_cfg("data=reviews_zh", "pretext=clm", "pretext.task.context=8"))
    assert banded["backbone"]["context"] == 8 and banded["pretext"]["task"]["context"] == 8


@pytest.mark.slow
def test_backward_and_banded_pretrainings_round_trip_through_the_cache_and_refuse_misreading(
    tmp_path, compose_cfg
):
    from conftest import run_in_process

    reading = ["pretext.task.direction=backward", "pretext.task.context=8"]
    first = run_in_process(tmp_path / "a", *TINY_TEXT, *reading)
    repeat = run_in_process(tmp_path / "b", *TINY_TEXT, *reading)
    assert first["pretrain_cache"] == "miss" and repeat["pretrain_cache"] == "hit"
    assert repeat["score"] == first["score"]  # the cached backbone reads as the fresh one did
    (backbone_file,) = (tmp_path / "outputs" / "cache" / "pretrain").glob("*/backbone.safetensors")
    config, meta = read_config(backbone_file), read_meta(backbone_file)
    assert (config["context"], config["direction"], config["causal"]) == (8, "backward", True)
    assert (meta["context"], meta["direction"]) == (8, "backward")
    with safe_open(str(backbone_file), framework="pt") as f:
        assert "ssl_lab.tokenizer" in f.metadata()
    transfer = ["data=reviews_zh", "pretext=none", f"backbone.checkpoint={backbone_file}"]
    with pytest.raises(SslLabError, match="set backbone.causal=true"):
        check_compatible(compose_cfg(*transfer))
    with pytest.raises(SslLabError, match=r"with context=8 \(pretext=clm\), but backbone.con"):
        check_compatible(compose_cfg(*transfer, "backbone.causal=true"))
    with pytest.raises(SslLabError, match="set backbone.direction=backward$"):
        check_compatible(compose_cfg(*transfer, "backbone.causal=true", "backbone.context=8"))
    check_compatible(
        compose_cfg(
            *transfer,
            "backbone.causal=true",
            "backbone.direction=backward",
            "backbone.context=8",
        )
    )
