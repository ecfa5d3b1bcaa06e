"""The contract between the pipeline and downstream tasks (downstream/task.py), and the interface
text data declares (data/texts.py: TextData)."""

from pathlib import Path

import pytest
from conftest import TINY, run_in_process
from hydra.utils import get_class
from omegaconf import OmegaConf

from ssl_lab.choices import CONF_DIR
from ssl_lab.data.in_memory import InMemoryDataModule
from ssl_lab.data.texts import TextData, as_text
from ssl_lab.downstream.task import DownstreamTask, checked
from ssl_lab.errors import SslLabError


def test_every_shipped_downstream_task_declares_the_contract():
    targets = {
        path.stem: OmegaConf.load(path)._target_
        for path in sorted((CONF_DIR / "downstream").glob("*.yaml"))
    }
    assert len(targets) >= 9
    for name, target in targets.items():
        assert DownstreamTask in get_class(target).__mro__, name


def test_metrics_without_a_numeric_score_or_its_name_break_the_contract():
    good = {"score": 0.5, "score_name": "test/acc", "extra": 1}
    assert checked("mine", good) is good
    for bad, says in [
        ({"score": 0.5}, "score=0.5, score_name=None"),
        ({"score": "high", "score_name": "test/acc"}, "score='high'"),
        ({"score": True, "score_name": "test/acc"}, "score=True"),
        ([0.5, "test/acc"], "evaluate returned list, not a dict"),
    ]:
        with pytest.raises(SslLabError, match="downstream=mine: ") as err:
            checked("mine", bad)
        assert says in str(err.value) and "\n" not in str(err.value)


class NoScoreName:
    """A user's task that keeps the method but not the metrics."""

    def __init__(self, **settings) -> None:
        pass

    def evaluate(self, backbone, data, make_trainer) -> dict:
        return {"score": 0.5}


class NoEvaluate:
    def __init__(self, **settings) -> None:
        pass


def test_the_pipeline_refuses_a_task_that_breaks_the_contract(tmp_path: Path):
    quick = [*TINY, "pretext=none"]
    with pytest.raises(SslLabError, match=r"^downstream=linear_probe: .*NoEvaluate has no"):
        run_in_process(tmp_path / "a", *quick, f"downstream._target_={__name__}.NoEvaluate")
    with pytest.raises(SslLabError, match="score_name=None; it must return a number"):
        run_in_process(tmp_path / "b", *quick, f"downstream._target_={__name__}.NoScoreName")
    assert not (tmp_path / "b" / "metrics.json").exists()


def test_text_data_declares_what_the_pipeline_asks_of_it(compose_cfg):
    from ssl_lab.data.reviews_zh import ReviewsZhDataModule

    assert TextData in ReviewsZhDataModule.__mro__
    assert TextData not in InMemoryDataModule.__mro__
    image = get_class(compose_cfg("data=digits").data._target_)
    assert issubclass(image, InMemoryDataModule) and TextData not in image.__mro__

    class Text:
        modality = "text"

    class Image:
        modality = "image"

    assert as_text(Text()) is not None and as_text(Image()) is None
