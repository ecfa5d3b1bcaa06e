"""Object detection: an FCOS head (torchvision's ``FCOS``) on the pretrained backbone's feature map,
trained on the boxes of the labelled images. Does the representation know *where* each object is
and *what* it is, several per image?

Why FCOS, on one feature level. The hand-off is one map (``forward_features``): a small CNN's
at stride 16, a ResNet's with the 3x3 stem at stride 8. On 64-128 px images the objects (digits
of 12-28 px, tree crowns of 8-40 px after tiling) span a factor of about four, which FCOS's size
ranges (4-8 strides per level) would put on one level anyway, so a feature pyramid adds nothing
here but cost. FCOS needs no anchor shapes to tune (RetinaNet's anchors must match the box
sizes; one point per location does, with a box regressed from it) and no region proposals (Faster
R-CNN's second stage costs more than the backbone at this size). One learned 2x upsampling
(``upsample``) brings a small CNN's 4x4 map of a 64 px canvas to 8x8, so nearby digits fall on
different points.

From torchvision: the head (``FCOSHead``: classification, box regression, centre-ness), the
matching of points to boxes (centre sampling), the losses (``sigmoid_focal_loss``,
``generalized_box_iou_loss``, centre-ness BCE), the box coding (``BoxLinearCoder``), the
decoding and ``batched_nms``: ``FCOS.compute_loss`` and ``FCOS.postprocess_detections``.
Here: the neck between the backbone's map and the head, and the freeze policy, which is
finetune's (``ClassifierModule``). The images arrive normalised, at their final size, so
torchvision's resizing transform is skipped. Matching a variable number of boxes per image reads
counts back from the device: a detection step syncs where a classification step does not.

Scores: COCO's mAP from torchmetrics' ``MeanAveragePrecision`` over the test split, ``score`` =
mAP at IoU 0.5 (``test/map50``), and ``test/map`` (mAP at IoU 0.5:0.95).
"""

import importlib.util
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import (
    FCOSClassificationHead,
    FCOSHead,
    FCOSRegressionHead,
)
from torchvision.models.detection.image_list import ImageList

from ssl_lab.data.detection import PADDING, unpad
from ssl_lab.downstream.classifier import ClassifierModule
from ssl_lab.downstream.schema import MAP_BACKENDS
from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.errors import SslLabError
from ssl_lab.ranks import unrepeated

SPLITS = {"train": "transfer/train_", "val": "transfer/val_", "test": "test/"}
NORM_GROUPS = 8  # GroupNorm groups in the head (torchvision's default of 32 needs 32 | width)
SHOWN = 8  # test images in detection.png
SHOWN_SCORE = 0.3  # predicted boxes drawn from this score up
REGRESSION_BIAS = 1.0  # initial box side, in point spacings (torchvision's FCOS: 0)


class Neck(nn.Sequential):
    """The backbone's map to the head's ``width`` channels, then ``upsample`` learned 2x
    upsamplings (transposed convolutions). ``out_channels``: what FCOS asks of its backbone."""

    def __init__(self, in_channels: int, width: int, upsample: int) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 1, bias=False),
            nn.GroupNorm(NORM_GROUPS, width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(upsample):
            layers += [
                nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False),
                nn.GroupNorm(NORM_GROUPS, width),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)
        self.out_channels = width


def fcos_detector(
    in_channels: int,
    num_classes: int,
    stride: int,
    width: int = 64,
    head_convs: int = 2,
    upsample: int = 1,
    **fcos_args: Any,
) -> FCOS:
    """torchvision's FCOS whose ``backbone`` is the neck over a pretrained backbone's map of
    ``stride`` (input pixels per map cell); one level, its points ``stride / 2**upsample`` apart,
    each point's size (what box distances are measured in) the same."""
    step = stride / 2**upsample
    norm = partial(nn.GroupNorm, NORM_GROUPS)
    head = FCOSHead(width, 1, num_classes, num_convs=0)
    head.classification_head = FCOSClassificationHead(
        width, 1, num_classes, head_convs, norm_layer=norm
    )
    head.regression_head = FCOSRegressionHead(width, 1, head_convs, norm_layer=norm)
    # Box sides start one point spacing out, not at 0: the head passes them through a ReLU, and a
    # side that starts below 0 at every point gets no gradient again (seen: GIoU loss stuck at
    # 0.53 from the fourth epoch on digit canvases, for some seeds).
    nn.init.constant_(head.regression_head.bbox_reg.bias, REGRESSION_BIAS)
    return FCOS(
        Neck(in_channels, width, upsample),
        num_classes,
        anchor_generator=AnchorGenerator(((step,),), ((1.0,),)),
        head=head,
        **fcos_args,
    )


def feature_stride(backbone: nn.Module, channels: int, size: int) -> int:
    """Input pixels per cell of the backbone's feature map, from one forward of a blank image in
    eval mode (batch-norm statistics untouched)."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    with torch.no_grad():
        cells = backbone.forward_features(torch.zeros(1, channels, size, size, device=device))
    backbone.train(was_training)
    return max(1, round(size / cells.shape[-1]))


class DetectionModule(ClassifierModule):
    """FCOS's losses on the labelled images; the freeze policy and optimiser groups are the
    classifier's (``head`` is the FCOS model without the pretrained backbone: neck and head).
    The test split's detections go into ``MeanAveragePrecision``; the first ``SHOWN`` test
    images and their detections are kept for the picture."""

    def __init__(
        self,
        backbone: nn.Module,
        detector: FCOS,
        num_classes: int,
        lr: float,
        map_backend: str = "pycocotools",
        **classifier_args: Any,
    ) -> None:
        super().__init__(backbone, detector, num_classes, lr, **classifier_args)
        self.mean_ap = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=map_backend)
        self.shown: list[tuple[torch.Tensor, dict, dict]] = []

    def detect(
        self, x: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[int]]:
        """FCOS's head outputs over all points, the points (as anchors) per image, and the
        points per level."""
        features = [self.head.backbone(self.backbone.forward_features(x))]
        outputs = self.head.head(features)
        images = ImageList(x, [tuple(x.shape[-2:])] * len(x))
        anchors = self.head.anchor_generator(images, features)
        return outputs, anchors, [f.shape[-2] * f.shape[-1] for f in features]

    def predictions(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Boxes, scores and labels per image after decoding and NMS (in eval mode)."""
        outputs, anchors, sizes = self.detect(x)
        return self._decoded(x, outputs, anchors, sizes)

    def _decoded(self, x, outputs, anchors, sizes) -> list[dict[str, torch.Tensor]]:
        split_outputs = {k: list(v.split(sizes, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(a.split(sizes)) for a in anchors]
        shapes = [tuple(x.shape[-2:])] * len(x)
        return self.head.postprocess_detections(split_outputs, split_anchors, shapes)

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        x, boxes, classes = batch
        targets = unpad(boxes, classes)
        outputs, anchors, sizes = self.detect(x)
        losses = self.head.compute_loss(targets, outputs, anchors, sizes)
        loss = sum(losses.values())
        prefix = SPLITS[split]
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        for name, value in losses.items():
            self.log(f"{prefix}loss_{name}", value, on_step=False, on_epoch=True, batch_size=len(x))
        if split == "test":
            detections = self._decoded(x, outputs, anchors, sizes)
            self.mean_ap.update(detections, targets)
            for image, found, truth in zip(x, detections, targets):
                if len(self.shown) < SHOWN:
                    self.shown.append((image.cpu(), _cpu(found), _cpu(truth)))
        return loss

    def on_test_epoch_start(self) -> None:
        self.mean_ap.reset()
        self.shown = []

    def on_test_epoch_end(self) -> None:
        result = self.mean_ap.compute()
        self.log("test/map50", result["map_50"].float())
        self.log("test/map", result["map"].float())
        self.mean_ap.reset()


def _cpu(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in d.items()}


def save_detection_picture(
    shown: list[tuple[torch.Tensor, dict, dict]],
    mean: torch.Tensor,
    std: torch.Tensor,
    class_names: list[str],
    path: Path,
    title: str,
) -> None:
    """Test images with the true boxes (dashed, white) and the predicted ones from
    ``SHOWN_SCORE`` up (solid, with class and score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ssl_lab.atomic import atomic_path

    fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.5), squeeze=False)
    for ax, (image, found, truth) in zip(axes[0], shown):
        pixels = (image * std.view(-1, 1, 1) + mean.view(-1, 1, 1)).clamp(0, 1)
        ax.imshow(
            pixels[0] if len(pixels) == 1 else pixels.permute(1, 2, 0),
            cmap="gray",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.axis("off")
        for x0, y0, x1, y1 in truth["boxes"].tolist():
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", ls="--", lw=0.8)
            )
        for (x0, y0, x1, y1), score, label in zip(
            found["boxes"].tolist(), found["scores"].tolist(), found["labels"].tolist()
        ):
            if score < SHOWN_SCORE:
                continue
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.0))
            name = class_names[label] if label < len(class_names) else str(label)
            ax.text(x0, y0, f"{name} {score:.2f}", color="lime", fontsize=5, va="bottom")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def check_backend(backend: str) -> None:
    """The COCO evaluation backend is importable, else one line naming the install."""
    if backend not in MAP_BACKENDS:
        raise SslLabError(f"downstream.map_backend={backend}: choose {', '.join(MAP_BACKENDS)}")
    if importlib.util.find_spec(backend) is None:
        raise SslLabError(
            f"downstream=detection counts mAP with {backend}, which is not installed: "
            "pip install -e '.[detection]'"
        )


class Detection(DownstreamTask):
    """Trains FCOS on the labelled images' boxes (``data.labelled_detection_dataset``, as many
    steps per epoch as the whole train split, ``data.fixed_epoch_length``), validates its loss,
    and counts COCO mAP on the test split; ``save_pictures`` draws ``detection.png``."""

    def __init__(
        self,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        width: int = 64,
        head_convs: int = 2,
        upsample: int = 1,
        center_sampling_radius: float = 1.5,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.6,
        detections_per_image: int = 100,
        map_backend: str = "pycocotools",
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
    ) -> None:
        check_backend(map_backend)
        self.epochs, self.lr = epochs, lr
        self.optimizer, self.scheduler = optimizer, scheduler
        self.head_args = {"width": width, "head_convs": head_convs, "upsample": upsample}
        self.fcos_args = {
            "center_sampling_radius": center_sampling_radius,
            "score_thresh": score_threshold,
            "nms_thresh": nms_threshold,
            "detections_per_img": detections_per_image,
        }
        self.map_backend = map_backend
        self.policy = {
            "backbone_lr_scale": backbone_lr_scale,
            "freeze": freeze,
            "trainable_blocks": trainable_blocks,
            "layer_decay": layer_decay,
        }
        self.shown: list[tuple[torch.Tensor, dict, dict]] = []
        self.picture_args: dict[str, Any] = {}

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        if not hasattr(data, "labelled_detection_dataset"):
            raise SslLabError(
                f"downstream=detection needs boxes: data={data.name} has none "
                "(data=digit_canvas or data=boxes)"
            )
        stride = feature_stride(backbone, data.channels, data.size)
        detector = fcos_detector(
            backbone.out_dim, data.num_classes, stride, **self.head_args, **self.fcos_args
        )
        module = DetectionModule(
            backbone,
            detector,
            data.num_classes,
            self.lr,
            self.map_backend,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            **self.policy,
        )
        trainer = make_trainer(max_epochs=self.epochs)
        trainer.fit(
            module,
            train_dataloaders=data.labelled_loader(data.labelled_detection_dataset()),
            val_dataloaders=data.loader(data.detection_dataset("val")),
        )
        (results,) = trainer.test(
            module,
            dataloaders=unrepeated(data.loader(data.detection_dataset("test"))),
            verbose=False,
        )
        self.shown = module.shown
        self.picture_args = {
            "mean": data.mean.cpu(),
            "std": data.std.cpu(),
            "class_names": list(getattr(data, "class_names", None) or range(data.num_classes)),
            "title": f"detection on {data.name}: true (dashed), predicted (score >= "
            f"{SHOWN_SCORE}); test/map50 {float(results['test/map50']):.3f}",
        }
        test = data.detection_dataset("test")
        return {
            "score": float(results["test/map50"]),
            "score_name": "test/map50",
            "test_map": float(results["test/map"]),
            "test_loss": float(results["test/loss"]),
            "test_images": len(test),
            "test_boxes": int((test.tensors[2] != PADDING).sum()),
            "freeze": self.policy["freeze"],
            "trainable_blocks": module.n_trainable_blocks,
            "layer_decay": self.policy["layer_decay"],
            "feature_stride": stride,
        }

    def save_pictures(self, out_dir: Path) -> list[Path]:
        """``detection.png`` in ``out_dir``: the first test images, true and predicted boxes."""
        if not self.shown:
            return []
        path = out_dir / "detection.png"
        save_detection_picture(self.shown, path=path, **self.picture_args)
        return [path]
