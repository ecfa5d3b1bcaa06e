"""downstream=detection and its data: box coding, mAP at its extremes, digit canvases (no overlap,
tight boxes, disjoint digits), box files (tiling, splits by image, each bad input in one line),
and a tiny end-to-end run through the real config that beats an untrained head."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_metrics, run_cli
from PIL import Image

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.build import build
from ssl_lab.data.boxes import BoxesDataModule, tile_boxes, tile_starts
from ssl_lab.data.detection import unpad
from ssl_lab.data.digit_canvas import DigitCanvasDataModule
from ssl_lab.downstream.detection import DetectionModule, fcos_detector, feature_stride
from ssl_lab.errors import SslLabError

# ../shared/data beside the checkout, or where SSL_LAB_DATA points
SHARED = Path(os.environ.get("SSL_LAB_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
TREES, MNIST = SHARED / "trees-deepforest.tar.gz", SHARED / "mnist.npz"
# Small canvases: a few digits of 8-14 px on 32 px, a CNN of three stages (stride 8).
TINY_CANVAS = [
    "logger=none",
    "backbone.widths=[8,16,32]",
    "data.size=32",
    "data.digit_size=[8,14]",
    "data.digits_per_canvas=[1,3]",
    "data.canvases={train:240,val:32,test:64}",
]


def canvases(**kwargs) -> DigitCanvasDataModule:
    settings = {"canvases": {"train": 120, "val": 20, "test": 40}, **kwargs}
    data = DigitCanvasDataModule(
        name="digit_canvas", num_classes=10, channels=1, size=64, **settings
    )
    data.setup()
    return data


def detection_module(num_classes: int = 10) -> DetectionModule:
    backbone = SmallCNN(1, (8, 16, 32))
    detector = fcos_detector(32, num_classes, stride=8, width=16)
    return DetectionModule(backbone, detector, num_classes, 1e-3, optimizer=torch.optim.AdamW)


def test_box_coding_round_trips_through_the_points_fcos_regresses_from():
    coder = detection_module().head.head.box_coder  # torchvision's BoxLinearCoder of FCOS
    points = torch.tensor([[4.0, 4.0, 12.0, 12.0], [20.0, 8.0, 28.0, 16.0], [0.0, 0.0, 8.0, 8.0]])
    boxes = torch.tensor([[1.0, 2.5, 30.0, 17.0], [18.0, 3.0, 33.0, 21.0], [0.5, 0.25, 7.0, 9.0]])
    encoded = coder.encode(points, boxes)
    assert torch.allclose(coder.decode(encoded, points), boxes, atol=1e-5)
    # distances in units of the point's size: left, top, right, bottom from its centre
    assert torch.allclose(encoded[0], torch.tensor([7.0, 5.5, 22.0, 9.0]) / 8)


def test_the_freeze_policy_and_backbone_lr_scale_work_as_in_finetune():
    backbone = SmallCNN(1, (8, 16, 32))
    detector = fcos_detector(32, 10, stride=8, width=16)
    module = DetectionModule(
        backbone,
        detector,
        10,
        1e-3,
        optimizer=torch.optim.AdamW,
        freeze="last_k",
        trainable_blocks=1,
        backbone_lr_scale=0.1,
    )
    trainable = {n.split(".")[1] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"2"}  # the top stage only
    groups = module.configure_optimizers()["optimizer"].param_groups
    head = {id(p) for p in detector.parameters()}
    assert {g["lr"] for g in groups if id(g["params"][0]) in head} == {1e-3}
    assert [g["lr"] for g in groups if id(g["params"][0]) not in head] == [pytest.approx(1e-4)]
    module.train()
    assert not backbone.stages[0].training and backbone.stages[2].training  # frozen: eval mode


def test_mean_average_precision_is_one_for_the_ground_truth_and_zero_when_all_miss():
    truth = [
        {
            "boxes": torch.tensor([[2.0, 3.0, 20.0, 25.0], [30.0, 30.0, 50.0, 60.0]]),
            "labels": torch.tensor([1, 7]),
        },
        {"boxes": torch.tensor([[10.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([7])},
    ]
    exact = [{**t, "scores": torch.ones(len(t["labels"]))} for t in truth]
    missed = [{**p, "boxes": p["boxes"] + 100.0} for p in exact]  # far from every true box
    for found, expected in ((exact, 1.0), (missed, 0.0)):
        metric = detection_module().mean_ap
        metric.update(found, truth)
        result = metric.compute()
        assert result["map_50"].item() == pytest.approx(expected)
        assert result["map"].item() == pytest.approx(expected)


def test_canvas_digits_never_touch_and_their_boxes_are_tight_around_the_ink():
    data = canvases()
    images = data.detection["train"].tensors[0] * data.std + data.mean  # back to [0, 1]
    for image, target in zip(images, unpad(*data.detection["train"].tensors[1:])):
        ink = image[0] > 1e-4
        covered = torch.zeros_like(ink)
        boxes = target["boxes"].long().tolist()
        assert 1 <= len(boxes) <= 5
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            inside = ink[y0:y1, x0:x1]
            # tight: every border row and column of the box holds ink
            assert inside[0].any() and inside[-1].any()
            assert inside[:, 0].any() and inside[:, -1].any()
            covered[y0:y1, x0:x1] = True
            for a0, b0, a1, b1 in boxes[i + 1 :]:  # at least one clear pixel between two boxes
                assert x0 > a1 or a0 > x1 or y0 > b1 or b0 > y1
        assert not (ink & ~covered).any()  # no ink outside the boxes


def test_train_val_and_test_canvases_use_disjoint_digits_fixed_by_split_seed():
    data = canvases()
    used = data.digits_used
    assert used["train"] and used["val"] and used["test"]
    assert not used["train"] & used["test"] and not used["train"] & used["val"]
    assert not used["val"] & used["test"]
    again = canvases()
    assert torch.equal(again.detection["test"].tensors[1], data.detection["test"].tensors[1])
    other = canvases(split_seed=1)
    assert not torch.equal(other.detection["test"].tensors[1], data.detection["test"].tensors[1])


def test_a_label_budget_counts_labelled_canvases_picked_by_seed():
    data = canvases(labelled_images=20, seed=3)
    assert data.n_labels == 20 and len(data.labelled_detection_dataset()) == 20
    assert not np.array_equal(
        canvases(labelled_images=20, seed=4).labelled_indices, data.labelled_indices
    )
    with pytest.raises(SslLabError, match="labelled_images=500: the train split has 120"):
        canvases(labelled_images=500)


@pytest.mark.skipif(not MNIST.is_file(), reason="../shared/data/mnist.npz is absent")
def test_mnist_canvases_take_their_test_digits_from_mnists_test_split():
    data = canvases(source="mnist", mnist_path=str(MNIST))
    assert min(data.digits_used["test"]) >= 60000 > max(data.digits_used["train"])


def test_tiles_clip_boxes_and_drop_those_mostly_outside():
    assert tile_starts(500, 200, 200) == [0, 200, 300] and tile_starts(150, 200, 200) == [0]
    boxes = np.array([[10, 10, 50, 50], [180, 0, 240, 40], [190, 100, 260, 140]], np.float32)
    kept, which, dropped = tile_boxes(boxes, 0, 0, 200, 0.5)
    # the second box has 20 of its 60 px inside (dropped); the third 10 of 70 (dropped)
    assert which.tolist() == [True, False, False] and dropped == 2
    kept, which, dropped = tile_boxes(boxes, 0, 0, 200, 0.3)
    assert which.tolist() == [True, True, False]
    assert kept[1].tolist() == [180, 0, 200, 40]  # clipped to the tile


def _box_folder(root: Path, csv_text: str) -> Path:
    root.mkdir(exist_ok=True)
    for name, size in (("a.png", (100, 80)), ("b.png", (60, 60)), ("c.png", (60, 60))):
        Image.new("RGB", size, (40, 120, 40)).save(root / name)
    (root / "boxes.csv").write_text(csv_text)
    return root


def _boxes(root: Path, **kwargs) -> BoxesDataModule:
    settings = {
        "root": str(root),
        "annotations": "boxes.csv",
        "class_names": ["tree"],
        "class_map": {"dead": "tree"},
        "cache_dir": str(root.parent / "cache"),
        "tile": 50,
        "name": "boxes",
        "num_classes": 1,
        "channels": 3,
        "size": 32,
        "val_images": ["b.png"],
        "test_images": ["c.png"],
        **kwargs,
    }
    data = BoxesDataModule(**settings)
    data.setup()
    return data


GOOD = (
    "image,xmin,ymin,xmax,ymax,label\na.png,5,5,20,25,tree\na.png,60,40,90,70,dead\n"
    "b.png,,,,,\nc.png,10,10,30,30,tree\n"
)


def test_box_files_are_tiled_split_by_whole_image_and_background_is_counted(tmp_path):
    data = _boxes(_box_folder(tmp_path / "trees", GOOD))
    assert {name for name, _, _ in data.tiles["train"]} == {"a.png"}
    assert {name for name, _, _ in data.tiles["test"]} == {"c.png"}
    # a.png (100 x 80) in 50 px tiles: x at 0, 50; y at 0, 30
    assert sorted(data.tiles["train"]) == [("a.png", x, y) for x in (0, 50) for y in (0, 30)]
    train = unpad(*data.detection["train"].tensors[1:])
    scale = 32 / 50
    first = train[0]["boxes"]  # the tile at (0, 0) holds the first box, resized with the tile
    assert torch.allclose(first, torch.tensor([[5.0, 5.0, 20.0, 25.0]]) * scale)
    # b.png's 4 tiles (its row names no box), and 2 of a.png's (one holds a box mostly outside)
    assert data.background_images == 6
    assert data.detection["train"].tensors[0].shape[1:] == (3, 32, 32)


@pytest.mark.parametrize(
    "csv_text, refusal",
    [
        (
            "image,xmin,ymin,xmax,ymax,label\na.png,5,5,120,25,tree\n",
            "outside image a.png (100x80)",
        ),
        ("image,xmin,ymin,xmax,ymax,label\na.png,-1,5,20,25,tree\n", "outside image a.png"),
        ("image,xmin,ymin,xmax,ymax,label\na.png,20,5,20,25,tree\n", "xmax must exceed xmin"),
        ("image,xmin,ymin,ymax,label\na.png,5,5,25,tree\n", "no column xmax"),
        (
            "image,xmin,ymin,xmax,ymax,label\nz.png,5,5,20,25,tree\n",
            "image z.png is named but not in",
        ),
        (
            "image,xmin,ymin,xmax,ymax,label\na.png,5,5,20,25,oak\n",
            "label 'oak' not in data.class_names",
        ),
        (
            "image,xmin,ymin,xmax,ymax,label\na.png,5,five,20,25,tree\n",
            "ymin='five' is not a number",
        ),
    ],
)
def test_each_bad_input_stops_in_one_line_naming_it(tmp_path, csv_text, refusal):
    root = _box_folder(tmp_path / "trees", csv_text)
    with pytest.raises(SslLabError) as caught:
        _boxes(root)
    assert refusal in str(caught.value) and "\n" not in str(caught.value)


def test_pascal_voc_files_are_read_like_the_csv(tmp_path):
    root = _box_folder(tmp_path / "trees", GOOD)
    (root / "voc").mkdir()
    (root / "voc" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>dead</name><bndbox><xmin>5</xmin>"
        "<ymin>5</ymin><xmax>20</xmax><ymax>25</ymax></bndbox></object></annotation>"
    )
    data = _boxes(root, annotations="voc")
    train = unpad(*data.detection["train"].tensors[1:])
    assert torch.allclose(train[0]["boxes"], torch.tensor([[5.0, 5.0, 20.0, 25.0]]) * 32 / 50)


@pytest.mark.skipif(not TREES.is_file(), reason="../shared/data/trees-deepforest.tar.gz is absent")
def test_the_tree_crowns_tarball_reads_as_data_boxes(tmp_path, compose_cfg):
    cfg = compose_cfg(
        "data=boxes", f"paths.data_dir={TREES.parent}", f"paths.output_dir={tmp_path}"
    )
    data = build(cfg, "data")
    data.setup()
    splits = {s: {name for name, _, _ in data.tiles[s]} for s in ("train", "val", "test")}
    assert splits["test"] == {"2019_YELL_2_541000_4977000_image_crop.png"}
    assert splits["val"] == {"OSBS_029.png"} and len(splits["train"]) == 2
    boxes = sum(int((data.detection[s].tensors[2] >= 0).sum()) for s in splits)
    assert boxes > 900 and data.dropped_boxes > 0  # 951 drawn; some cut by tile borders
    assert int(data.detection["train"].tensors[2].max()) == 0  # Dead and Alive mapped to Tree


def test_detection_on_data_without_boxes_is_refused_before_any_work(tmp_path):
    result = run_cli(tmp_path, "downstream=detection", "logger=none")
    assert result.returncode != 0
    assert "downstream=detection needs boxes, but data=digits has none" in result.stderr


def _untrained_map(cfg) -> float:
    """mAP@0.5 on the test canvases of the same head, untrained, on a random backbone."""
    torch.manual_seed(cfg.seed)
    data, backbone = build(cfg, "data"), build(cfg, "backbone")
    data.setup()
    d = cfg.downstream
    detector = fcos_detector(
        backbone.out_dim,
        data.num_classes,
        feature_stride(backbone, data.channels, data.size),
        width=d.width,
        head_convs=d.head_convs,
        upsample=d.upsample,
        score_thresh=d.score_threshold,
    )
    module = DetectionModule(
        backbone, detector, data.num_classes, d.lr, optimizer=torch.optim.AdamW
    )
    module.eval()
    with torch.no_grad():
        for x, boxes, classes in data.loader(data.detection_dataset("test")):
            module.mean_ap.update(module.predictions(x), unpad(boxes, classes))
    return float(module.mean_ap.compute()["map_50"])


@pytest.mark.slow
def test_digit_canvases_detected_after_rotation_pretraining_beat_an_untrained_head(
    tmp_path, compose_cfg, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_CANVAS,
        "data=digit_canvas",
        "downstream=detection",
        "pretext=rotation",
        "pretext.epochs=1",
        "downstream.epochs=4",
        "data.labelled_images=120",
        "logger=csv_wandb",
    ]
    result = run_cli(tmp_path, f"hydra.run.dir={run_dir}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(run_dir)
    assert metrics["score_name"] == "test/map50" and metrics["labelled_images"] == 120
    assert 0.0 <= metrics["test_map"] <= metrics["score"] <= 1.0
    assert metrics["n_labels"] == 120 and metrics["test_images"] == 64
    assert (run_dir / "detection.png").stat().st_size > 1000
    (records,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"transfer/detection" in records.read_bytes()
    untrained = _untrained_map(compose_cfg(*overrides))
    assert metrics["score"] > untrained + 0.05, (metrics["score"], untrained)
    assert json.loads((run_dir / "run_info.json").read_text())["transfer_seconds"] > 0


@pytest.mark.parametrize(
    "overrides, refusal",
    [
        (
            ["data=digit_canvas", "data.labelled_images=20", "data.labels_per_class=2"],
            "data.labelled_images=20: null when data.labels_per_class or data.label_fraction",
        ),
        (["data=digit_canvas", "data.digit_size=[20,80]"], "data.digit_size=[20,80]: the longest"),
        (["data=digit_canvas", "data.digit_size=[20,10]"], "data.digit_size=[20,10]: [min, max]"),
        (["data=digit_canvas", "data.source=emnist"], "data.source=emnist: one of: digits, mnist"),
        (["data=boxes", "data.num_classes=2"], "data.num_classes=2: equal to the length of"),
        (["data=boxes", "data.min_visible=0"], "data.min_visible=0.0: a number > 0 and <= 1"),
        (["downstream=detection", "downstream.width=20"], "downstream.width=20: a multiple of 8"),
        (["downstream=detection", "downstream.freeze=some"], "downstream.freeze=some: one of"),
    ],
)
def test_a_detection_setting_out_of_range_is_one_line_naming_it(compose_cfg, overrides, refusal):
    from ssl_lab.config_check import check_config

    cfg = compose_cfg(*overrides, "paths.run_dir=/tmp/run")
    with pytest.raises(SslLabError) as caught:
        check_config(cfg)
    assert str(caught.value).startswith(refusal), str(caught.value)
