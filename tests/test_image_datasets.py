"""Image datasets as DataModules: .npz arrays, class-per-folder trees (and archives of them),
torchvision benchmarks, and STL-10-style unlabelled images that only pretraining sees."""

import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, read_metrics, run_cli, run_in_process
from PIL import Image
from sklearn.datasets import load_digits

from ssl_lab.build import build
from ssl_lab.data.image_folder import ImageFolderDataModule
from ssl_lab.data.images import channels_first
from ssl_lab.data.in_memory import UNLABELLED
from ssl_lab.data.npz import NpzDataModule
from ssl_lab.data.torchvision_sets import TorchvisionDataModule
from ssl_lab.errors import SslLabError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COMMON = dict(num_classes=3, size=8, val_fraction=0.25, test_fraction=0.25)


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def write_tree(root: Path, per_class: int = 4, classes=("cat", "dog", "fox")) -> None:
    """Uniform 10x12 RGB PNGs whose grey level encodes class and index, so labels can be checked
    against pixels."""
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            level = 60 * label + i
            Image.fromarray(np.full((10, 12, 3), level, np.uint8)).save(root / name / f"{i}.png")


def folder(root: Path, tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        root=str(root),
        cache_dir=str(tmp_path / "cache"),
        name="folder",
        threads=2,
        **{"channels": 3, **COMMON, **kwargs},
    )


def test_channels_last_is_detected_only_when_the_last_axis_alone_looks_like_channels():
    assert channels_first(np.zeros((5, 8, 9, 3))).shape == (5, 3, 8, 9)
    assert channels_first(np.zeros((5, 8, 9, 1))).shape == (5, 1, 8, 9)
    assert channels_first(np.zeros((5, 3, 8, 9))).shape == (5, 3, 8, 9)
    assert channels_first(np.zeros((5, 3, 8, 3))).shape == (5, 3, 8, 3)
    assert channels_first(np.zeros((5, 8, 9))).shape == (5, 8, 9)


def test_npz_channels_last_uint8_uses_the_files_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = write_npz(
        tmp_path / "tiny.npz",
        x_train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(40) % 3,
        x_test=rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8),
        y_test=np.arange(9) % 3,
    )
    data = NpzDataModule(path=str(path), name="npz", channels=3, **COMMON)
    data.setup()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "val": 10, "test": 9}
    assert data.splits["test"].tensors[0].shape == (9, 3, 8, 8)
    assert data.splits["test"].tensors[1].tolist() == (np.arange(9) % 3).tolist()
    # uint8 is scaled to [0, 1] before the train statistics are taken
    assert 0.3 < float(data.mean.mean()) < 0.7


def test_npz_float_grayscale_without_test_split_is_split_by_seed_and_resized(tmp_path):
    path = write_npz(
        tmp_path / "tiny.npz",
        x_train=np.random.default_rng(0).random((40, 6, 6)),
        y_train=np.arange(40) % 3,
    )
    data = NpzDataModule(path=str(path), name="npz", channels=1, **COMMON)
    data.setup()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 20, "val": 10, "test": 10}
    assert data.splits["train"].tensors[0].shape == (20, 1, 8, 8)
    assert float(data.mean) == pytest.approx(0.5, abs=0.1)  # floats are taken as [0, 1]


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: NpzDataModule(path=str(tmp / "missing.npz"), name="npz", channels=1, **COMMON),
        lambda tmp: folder(tmp / "missing", tmp),
    ],
)
def test_a_missing_path_is_refused_naming_it(tmp_path, make):
    with pytest.raises(SslLabError, match="missing"):
        make(tmp_path).setup()


def test_a_missing_npz_fails_the_cli_with_one_line(tmp_path):
    result = run_cli(tmp_path, *TINY, "data=npz", f"data.path={tmp_path / 'nope.npz'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"ssl-lab: error: data.path: no such file: {tmp_path / 'nope.npz'}"]


def test_flat_image_folder_reads_labels_from_folder_names_and_splits_by_seed(tmp_path):
    write_tree(tmp_path / "tree")
    data = folder(tmp_path / "tree", tmp_path)
    arrays = data.load_arrays()
    assert arrays.keys() == {"x_train", "y_train"} and arrays["x_train"].shape == (12, 3, 8, 8)
    levels = arrays["x_train"][:, 0, 0, 0].astype(int)
    assert (levels // 60).tolist() == arrays["y_train"].tolist()  # cat=0, dog=1, fox=2
    data.setup()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "val": 3, "test": 3}


def test_image_folder_converts_to_grayscale_when_channels_is_1(tmp_path):
    write_tree(tmp_path / "tree")
    data = folder(tmp_path / "tree", tmp_path, channels=1)
    data.setup()
    assert data.splits["train"].tensors[0].shape == (6, 1, 8, 8)


def test_image_folder_with_train_val_test_uses_the_trees_own_splits(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        write_tree(tmp_path / "tree" / split, per_class=n)
    data = folder(tmp_path / "tree", tmp_path)
    data.setup()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 6, "test": 9}
    assert data.splits["test"].tensors[1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_image_folder_is_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree")
    first = folder(tmp_path / "tree", tmp_path).load_arrays()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decoding(self, path):
        raise AssertionError("decoded again")

    monkeypatch.setattr(ImageFolderDataModule, "_decode", no_decoding)
    again = folder(tmp_path / "tree", tmp_path).load_arrays()
    assert np.array_equal(first["x_train"], again["x_train"])

    monkeypatch.undo()  # a new file changes the key: decode again
    Image.new("RGB", (10, 12)).save(tmp_path / "tree" / "dog" / "new.png")
    assert len(folder(tmp_path / "tree", tmp_path).load_arrays()["x_train"]) == 13


def write_corrupt(tree: Path) -> None:
    (tree / "dog" / "garbage.png").write_bytes(b"not an image")
    png = (tree / "dog" / "0.png").read_bytes()
    (tree / "fox" / "truncated.png").write_bytes(png[: len(png) // 2])


def test_corrupt_images_are_skipped_counted_and_warned_about(tmp_path, caplog):
    write_tree(tmp_path / "tree")
    write_corrupt(tmp_path / "tree")
    with caplog.at_level(logging.WARNING, logger="ssl_lab"):
        data = folder(tmp_path / "tree", tmp_path, on_corrupt="skip")
        arrays = data.load_arrays()
    assert len(arrays["x_train"]) == 12 and data.skipped_images == 2
    assert "skipped 2 unreadable images" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ssl_lab"):  # and again from the cache
        again = folder(tmp_path / "tree", tmp_path, on_corrupt="skip")
        again.load_arrays()
    assert "skipped 2 unreadable images" in caplog.text and again.skipped_images == 2


def test_a_run_records_how_many_corrupt_images_it_skipped(tmp_path):
    write_tree(tmp_path / "tree", per_class=10)
    write_corrupt(tmp_path / "tree")
    metrics = run_in_process(
        tmp_path / "run",
        *TINY,
        "pretext=none",
        "data=image_folder",
        f"data.root={tmp_path / 'tree'}",
        "data.num_classes=3",
        "data.threads=2",
    )
    assert metrics["skipped_images"] == 2 and metrics["n_labels"] == 21  # 30 readable, 70%
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped_images"] == 2


def test_a_corrupt_image_is_refused_naming_the_file_with_on_corrupt_stop(tmp_path):
    write_tree(tmp_path / "tree")
    (tmp_path / "tree" / "dog" / "garbage.png").write_bytes(b"not an image")
    with pytest.raises(SslLabError, match=r"cannot read image .*dog/garbage\.png"):
        folder(tmp_path / "tree", tmp_path, on_corrupt="stop").load_arrays()


def test_a_class_count_that_disagrees_with_the_config_is_refused(tmp_path):
    write_tree(tmp_path / "tree")
    with pytest.raises(SslLabError, match="data.num_classes=5, but .* has 3 class folders"):
        folder(tmp_path / "tree", tmp_path, num_classes=5).load_arrays()


def test_a_tar_gz_root_is_extracted_once_into_the_cache(tmp_path):
    for split in ("train", "test"):
        write_tree(tmp_path / "tiny" / split)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tiny", arcname="tiny")
    for _ in range(2):
        data = folder(archive, tmp_path)
        data.setup()
        assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "val": 3, "test": 12}
    extracted = [p for p in (tmp_path / "cache" / "extracted").iterdir() if p.is_dir()]
    assert len(extracted) == 1


class FakeSTL10:
    """Stands in for ``torchvision.datasets.STL10``: same constructor and attributes."""

    sizes = {"train": 30, "test": 12, "unlabeled": 50}

    def __init__(self, root: str, download: bool, split: str) -> None:
        n = self.sizes[split]
        self.data = np.full((n, 3, 12, 12), 200 if split == "unlabeled" else 100, np.uint8)
        self.labels = np.full(n, -1) if split == "unlabeled" else np.arange(n) % 3


def test_unlabelled_images_are_pretrained_on_but_never_labelled_validated_or_tested(tmp_path):
    data = TorchvisionDataModule(
        dataset=FakeSTL10,
        root=str(tmp_path),
        download=False,
        name="stl10",
        channels=3,
        split_args={
            "train": {"split": "train"},
            "test": {"split": "test"},
            "unlabelled": {"split": "unlabeled"},
        },
        **COMMON,
    )
    data.setup()
    pretraining = torch.cat([y for _, y in data.unlabelled_dataloader()])
    assert len(pretraining) == 22 + 50 and (pretraining == UNLABELLED).sum() == 50
    for split in ("val", "test"):
        assert (data.splits[split].tensors[1] >= 0).all()
    assert len(data.labelled_dataset()) == 22
    assert all(y >= 0 for _, y in data.labelled_dataset())
    # normalised with the labelled train statistics only (unlabelled images are brighter)
    assert float(data.mean.mean()) == pytest.approx(100 / 255, abs=1e-6)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10"])
def test_a_torchvision_dataset_absent_without_download_is_refused_naming_root(
    compose_cfg, tmp_path, name
):
    cfg = compose_cfg(f"data={name}", f"paths.data_dir={tmp_path / 'absent'}")
    assert cfg.data.download is False
    cause = rf"data={name}: not found under .*absent .*data.download=true"
    with pytest.raises(SslLabError, match=cause):
        build(cfg, "data").setup()


@pytest.mark.skipif(not (SHARED / "mnist.npz").is_file(), reason="no shared mnist.npz")
def test_shared_mnist_npz_has_60000_train_and_10000_test(compose_cfg):
    cfg = compose_cfg("data=npz", f"data.path={SHARED / 'mnist.npz'}")
    data = build(cfg, "data")
    data.setup()
    assert len(data.splits["train"]) + len(data.splits["val"]) == 60000
    assert data.splits["test"].tensors[0].shape == (10000, 1, 32, 32)
    assert float(data.mean) == pytest.approx(0.1307, abs=0.002)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(), reason="no shared CIFAR-10")
def test_shared_cifar10_jpeg_archive_has_50000_train_and_10000_test(compose_cfg, cifar_cache):
    cfg = compose_cfg(
        "data=image_folder",
        f"data.root={SHARED / 'cifar10-jpeg.tar.gz'}",
        f"data.cache_dir={cifar_cache}",
        "data.threads=2",
    )
    data = build(cfg, "data")
    arrays = data.load_arrays()
    assert arrays["x_train"].shape == (50000, 3, 32, 32)
    assert arrays["x_test"].shape == (10000, 3, 32, 32)
    assert np.bincount(arrays["y_train"]).tolist() == [5000] * 10


@pytest.mark.slow
def test_rotation_then_linear_probe_on_an_npz_beats_chance(tmp_path):
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    path = write_npz(
        tmp_path / "digits.npz",
        x_train=images[:1400],
        y_train=digits.target[:1400],
        x_test=images[1400:],
        y_test=digits.target[1400:],
    )
    result = run_cli(
        tmp_path,
        "data=npz",
        f"data.path={path}",
        "pretext=rotation",
        "downstream=linear_probe",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["data"] == "npz" and metrics["n_labels"] == 1260
    assert metrics["score"] > 0.3, metrics  # chance is 0.1
