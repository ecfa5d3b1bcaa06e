"""The schema of ``downstream``: what every transfer task declares, and each one's own arguments.
A YAML names its schema in its defaults list (``- /schema/downstream/knn@_here_``)."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from ssl_lab.schema import is_object, partial_setting, schema, setting

FREEZE_CHOICES = ("full", "frozen", "last_k")  # fine-tuning: which backbone blocks train
STYLES = "class:<k>, inverted or edges"  # downstream=generative_finetune's target styles
MAP_BACKENDS = ("pycocotools", "faster_coco_eval")  # downstream=detection: torchmetrics' COCO mAP


def _style(value: Any) -> bool:
    kind = str(value)
    return kind in ("inverted", "edges") or (
        kind.startswith("class:") and kind.removeprefix("class:").isdigit()
    )


@schema("downstream/base", base_for="downstream")
@dataclass
class DownstreamConfig:
    """What every downstream task declares."""

    _target_: str = setting("the transfer task class: evaluate(backbone, data, make_trainer)")
    name: str = setting("the choice's name: metrics.json and the report use it")
    modality: str = setting(
        "the data it works on, checked against data.modality", choices=("image", "text", "any")
    )


@schema("downstream/trained", base_for="downstream")
@dataclass
class TrainedDownstreamConfig(DownstreamConfig):
    """A transfer task that trains a head (and maybe the backbone) on the labelled subset."""

    epochs: int = setting("transfer epochs (data.fixed_epoch_length sets their length)", ge=1)
    lr: float = setting("learning rate of the head (the optimizer gets it)", gt=0)
    optimizer: Any = partial_setting("the optimizer, built over the parameters")
    scheduler: Any = partial_setting("a learning-rate scheduler stepped each epoch", optional=True)


@schema("downstream/finetune", base_for="downstream")
@dataclass
class FineTuneConfig(TrainedDownstreamConfig):
    freeze: str = setting(
        "full: train all; frozen: none; last_k: the top trainable_blocks", choices=FREEZE_CHOICES
    )
    trainable_blocks: int = setting("blocks that train with freeze=last_k", ge=1)
    backbone_lr_scale: float = setting("backbone lr = lr x this (0 freezes it)", ge=0)
    layer_decay: float = setting("block i from the top trains at lr x scale x layer_decay**i", gt=0)


@schema("downstream/segmentation")
@dataclass
class SegmentationConfig(FineTuneConfig):
    threshold: float = setting("foreground: intensity above this, before normalisation", ge=0, le=1)
    decoder_levels: int = setting("learned 2x upsamplings; bilinear for the rest", ge=1)
    decoder_width: int = setting("channels after the first decoder layer, halved per level", ge=1)


@schema("downstream/detection")
@dataclass
class DetectionConfig(FineTuneConfig):
    requires_boxes: bool = setting("needs data with boxes (data=digit_canvas, data=boxes)")
    width: int = setting(
        "channels of the neck and head (GroupNorm of 8 groups: a multiple of 8)", ge=8
    )
    head_convs: int = setting("3x3 conv layers in each of FCOS's two branches", ge=0)
    upsample: int = setting("learned 2x upsamplings of the backbone's map before the head", ge=0)
    center_sampling_radius: float = setting(
        "a point may answer for a box whose centre is this many point spacings away", gt=0
    )
    score_threshold: float = setting("detections scoring below this are dropped", ge=0, lt=1)
    nms_threshold: float = setting("NMS: a box overlapping a better one this much goes", gt=0, le=1)
    detections_per_image: int = setting("at most this many detections per image", ge=1)
    map_backend: str = setting("torchmetrics' COCO evaluation backend", choices=MAP_BACKENDS)

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        if node.width % 8:
            return f"width={node.width}: a multiple of 8 (GroupNorm of 8 groups)"
        return None


@schema("downstream/prompt")
@dataclass
class PromptingConfig(TrainedDownstreamConfig):
    requires_language_model: bool = setting("needs a trained language-model head")
    trains_language_model: bool = setting("trains that head itself (few_shot)")
    patterns: list[str] | None = setting("cloze patterns, each with {text} and [MASK] once")
    verbalizers: list[str] | None = setting("one token per label, in label order")
    few_shot: bool = setting("fine-tune the language model on the patterns first")
    calibrate: bool = setting("score each verbalizer against the pattern around an empty text")


@schema("downstream/knn")
@dataclass
class KNNConfig(DownstreamConfig):
    k: int = setting("neighbours that vote (clamped to the labelled examples)", ge=1)
    temperature: float = setting("each neighbour votes exp(cosine similarity / temperature)", gt=0)
    batch_size: int = setting("test queries scored per block of the similarity matrix", ge=1)


@schema("downstream/kmeans")
@dataclass
class KMeansConfig(DownstreamConfig):
    n_init: int = setting("k-means restarts; the best inertia wins", ge=1)
    seed: int = setting("the restarts' seed (the run's)", ge=0)


@schema("downstream/fewshot")
@dataclass
class FewShotConfig(DownstreamConfig):
    ways: int = setting("classes per episode", ge=2, le="data.num_classes")
    shots: list[int] = setting("labelled examples per class and episode, each reported", ge=1)
    queries: int = setting("test examples per class and episode", ge=1)
    episodes: int = setting("episodes per shot", ge=1)
    classifier: str = setting(
        "prototype (nearest class mean) or linear", choices=("prototype", "linear")
    )
    distance: str = setting("prototype's distance", choices=("euclidean", "cosine"))
    steps: int = setting("linear: optimiser steps per support set", ge=1)
    lr: float = setting("linear: the optimiser's learning rate", gt=0)
    optimizer: Any = partial_setting("linear: the optimizer")
    seed: int = setting("the episodes' seed (the run's)", ge=0)


@schema("downstream/generative_finetune")
@dataclass
class GenerativeFinetuneConfig(DownstreamConfig):
    style: str = setting("the target style", accepts=STYLES, check=_style)
    images: int = setting("target-style train images to adapt on", ge=1)
    steps: int = setting(
        "optimiser steps, the same for the transferred and the scratch model", ge=1
    )
    batch_size: int = setting("images per step", ge=1)
    lr: float = setting("learning rate", gt=0)
    decoder_levels: int = setting("2x upsampling stages; bilinear for the rest", ge=1)
    optimizer: Any = partial_setting("the optimizer")
    seed: int = setting("the images' and the scratch model's seed (the run's)", ge=0)


@schema("downstream/classical")
@dataclass
class ClassicalConfig(DownstreamConfig):
    requires_pretext: str = setting(
        "the only pretext it makes sense after (it ignores the backbone)"
    )
    classifier: Any = setting(
        "a scikit-learn classifier on the raw pixels, or on the TF-IDF features of text",
        accepts="a node with _target_",
        check=is_object,
    )
    text_features: str = setting(
        "text: char 1-3-grams, word 1-2-grams, or auto (char where the text is Chinese)",
        choices=("auto", "char", "word"),
    )


@schema("downstream/translate")
@dataclass
class TranslateConfig(TrainedDownstreamConfig):
    requires_pairs: bool = setting("needs sentence pairs (data=zh_en, parallel_tsv)")
    run_dir: str | None = setting(
        "where translator.safetensors and translations.md go (null: the run's directory)"
    )
    share: bool = setting("decoder = the encoder module (tied weights); false: a copy of it")
    label_smoothing: float = setting("label smoothing of the teacher-forced loss", ge=0, lt=1)
    freeze: str = setting(
        "full: train all; frozen: only the cross-attention; last_k: the top trainable_blocks "
        "of encoder and decoder",
        choices=FREEZE_CHOICES,
    )
    trainable_blocks: int = setting("blocks that train with freeze=last_k", ge=1)
    backbone_lr_scale: float = setting("pretrained weights' lr = lr x this (0 freezes them)", ge=0)
    layer_decay: float = setting("block i from the top trains at lr x scale x layer_decay**i", gt=0)
    beam: int = setting("beam width (1: greedy)", ge=1)
    max_new_tokens: int = setting("length limit of an output, in tokens", ge=1)
    length_penalty: float = setting("rank hypotheses by log-prob / length**this", ge=0)
    shown: int = setting("test pairs shown in translations.md", ge=0)
