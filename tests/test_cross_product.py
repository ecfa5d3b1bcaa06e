"""Every image pretext task crossed with every image downstream task, as one Hydra multirun."""

import pytest
from conftest import read_metrics, run_cli

PRETEXTS = ("none", "rotation", "supervised", "jigsaw", "inpainting")
DOWNSTREAMS = ("linear_probe", "finetune", "knn", "fewshot", "kmeans", "segmentation")

# Overrides every choice above accepts (no downstream.*: knn, fewshot and kmeans have no epochs).
# Two labels per class and no fixed epoch length make each transfer epoch a single batch.
TINIEST = [
    "logger=none",
    "pretext.epochs=1",
    "data.size=16",
    "backbone.widths=[4,8,8]",
    "data.labels_per_class=2",
    "data.fixed_epoch_length=false",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[tuple[str, str], dict]:
    tmp_path = tmp_path_factory.mktemp("cross_product")
    result = run_cli(
        tmp_path,
        "-m",
        f"pretext={','.join(PRETEXTS)}",
        f"downstream={','.join(DOWNSTREAMS)}",
        *TINIEST,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    return {(m["pretext"], m["downstream"]): m for m in runs}


@pytest.mark.slow
@pytest.mark.parametrize("pretext", PRETEXTS)
@pytest.mark.parametrize("downstream", DOWNSTREAMS)
def test_every_pretext_transfers_to_every_downstream_task(sweep, pretext, downstream):
    metrics = sweep.get((pretext, downstream))
    assert metrics is not None, f"no metrics.json for pretext={pretext} downstream={downstream}"
    assert isinstance(metrics["score"], float) and isinstance(metrics["score_name"], str)
