import multiprocessing
import time

from ssl_lab.atomic import build_once
from ssl_lab.cache import pretrain_key


def test_key_depends_on_pretraining_choices_only(compose_cfg):
    base = pretrain_key(compose_cfg())
    assert base.startswith("rotation-")
    for same in (
        ["downstream=finetune"],
        ["data.labels_per_class=10"],
        ["logger=none"],
        ["downstream.epochs=99"],
        ["+trainer.enable_progress_bar=true"],
    ):
        assert pretrain_key(compose_cfg(*same)) == base, same
    for other in (
        ["seed=1"],
        ["pretext.epochs=3"],
        ["pretext.lr=0.1"],
        ["data.size=16"],
        ["backbone=resnet18"],
        ["data.batch_size=64"],
        ["trainer.precision=bf16-mixed"],
        ["nonfinite=skip"],
    ):
        assert pretrain_key(compose_cfg(*other)) != base, other


def _slow_build(entry, marker_dir, tag):
    def build(staging):
        (marker_dir / f"built-by-{tag}").touch()
        time.sleep(1.0)
        (staging / "weights").write_text(tag)

    return build_once(entry, build)


def _racer(entry, marker_dir, tag, results):
    results[tag] = _slow_build(entry, marker_dir, tag)


def test_racing_jobs_build_once_and_the_others_reuse(tmp_path):
    entry, markers = tmp_path / "cache" / "key", tmp_path / "markers"
    markers.mkdir()
    with multiprocessing.Manager() as manager:
        results = manager.dict()
        jobs = [
            multiprocessing.Process(target=_racer, args=(entry, markers, tag, results))
            for tag in ("a", "b")
        ]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join(30)
        assert sorted(results.values()) == [False, True]  # one miss, one hit
    assert len(list(markers.iterdir())) == 1
    assert (entry / "weights").read_text() in ("a", "b")
    assert [p.name for p in entry.parent.iterdir() if "staging" in p.name] == []


def test_a_failed_build_leaves_no_entry(tmp_path):
    entry = tmp_path / "key"

    def broken(staging):
        (staging / "half").write_text("x")
        raise RuntimeError("killed")

    try:
        build_once(entry, broken)
    except RuntimeError:
        pass
    assert not entry.exists()
    assert not build_once(entry, lambda staging: (staging / "w").write_text("ok"))
    assert build_once(entry, lambda staging: None)
