"""``compile=true`` (or a torch.compile backend's name) compiles the backbone in place: the
pretraining it makes is the cache entry an uncompiled run uses, and the hand-off file holds the
same state_dict keys. The ``eager`` backend runs dynamo's capture with PyTorch's own kernels: the
code path of ``compile=true`` without a C++ or GPU compiler, and the same numbers."""

from pathlib import Path

import pytest
from conftest import TINY, run_in_process
from safetensors.torch import load_file

from ssl_lab.build import build


@pytest.mark.slow
def test_a_compiled_backbone_shares_the_cache_and_hands_over_the_same_keys(tmp_path, compose_cfg):
    common = [*TINY, "pretext.epochs=1", "downstream.epochs=1"]
    compiled = run_in_process(tmp_path / "compiled", *common, "compile=eager")
    plain = run_in_process(tmp_path / "plain", *common)
    assert (compiled["pretrain_cache"], plain["pretrain_cache"]) == ("miss", "hit")
    assert compiled["pretrain_dir"] == plain["pretrain_dir"]
    handed_over = load_file(Path(plain["pretrain_dir"]) / "backbone.safetensors")
    assert set(handed_over) == set(build(compose_cfg(*TINY), "backbone").state_dict())
    assert compiled["score"] == plain["score"]  # the same weights, features and probe
