"""The schema of ``pretext`` (what ``pipeline.py`` and ``PretextModule`` read) and of each task's
own arguments (``pretext.task``). A YAML names its schemas in its defaults list; a task with
arguments of its own adds a small dataclass here, beside the others (README, "Config schema")."""

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from ssl_lab.schema import is_object, partial_setting, schema, setting

MODALITIES = ("image", "text", "any")
MASK_TYPES = ("center", "random_blocks", "irregular")  # pretext=inpainting's masks


@schema("pretext/base", base_for="pretext")
@dataclass
class PretextConfig:
    """What every pretext choice declares, ``none`` included."""

    name: str = setting("the choice's name: metrics.json, the report and the cache use it")
    modality: str = setting(
        "the data it works on, checked against data.modality", choices=MODALITIES
    )
    epochs: int = setting("pretraining epochs (0: no pretraining)", ge=0)
    task: Any = setting(
        "the pretext task (its arguments: pretext.task.*); null: no pretraining",
        accepts="a node with _target_, or null",
        check=lambda v: v is None or is_object(v),
    )
    snapshot_epochs: list[int] | None = setting(
        "also keep the backbone after these epochs (snapshots/ in the cache entry)",
        default=None,
        ge=1,
        empty=True,
    )


@schema("pretext/trained", base_for="pretext")
@dataclass
class TrainedPretextConfig(PretextConfig):
    """A pretext that trains the backbone: ``PretextModule``'s arguments."""

    _target_: str = setting("the LightningModule that trains the backbone with the task")
    lr: float = setting(
        "learning rate (the optimizer gets it; never set it inside optimizer)", gt=0
    )
    optimizer: Any = partial_setting("the optimizer, built over the parameters")
    scheduler: Any = partial_setting("a learning-rate scheduler stepped each epoch", optional=True)


@schema("pretext/language_model", base_for="pretext")
@dataclass
class LanguageModelPretextConfig(TrainedPretextConfig):
    """A pretext that trains the backbone's language-model head (downstream=prompt reads it)."""

    language_model: str = setting("the head it trains", choices=("masked", "causal"))


@schema("pretext/causal_language_model", base_for="pretext")
@dataclass
class CausalPretextConfig(LanguageModelPretextConfig):
    """A pretext that needs a causal backbone (backbone.causal follows ``causal``)."""

    causal: bool = setting("run the backbone causally (each token sees only those before it)")


@schema("pretext/task/base", base_for="pretext.task")
@dataclass
class TaskConfig:
    """A pretext task: the module ``_target_`` names; it gets ``feature_dim`` from the backbone."""

    _target_: str = setting("the PretextTask class")


@schema("pretext/task/jigsaw")
@dataclass
class JigsawConfig(TaskConfig):
    grid: int = setting("tiles per side of the puzzle", ge=2)
    num_permutations: int = setting("permutations to tell apart (the classes)", ge=2)
    tile_fraction: float = setting("tile side / cell side: the random gap hides edges", gt=0, le=1)
    hidden_dim: int = setting("units of the MLP over the concatenated tile features", ge=1)
    grayscale_prob: float = setting("share of tiles turned grayscale (RGB only)", ge=0, le=1)
    color_jitter: float = setting("std of per-tile colour shifts (RGB only)", ge=0)
    seed: int = setting("fixes the permutation set, not the run", ge=0)

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        """Tiles that hold two values or more (each is normalised by its own std), and no more
        permutations than the grid has."""
        cell = cfg.data.size // node.grid
        if cell < 1:
            return f"grid={node.grid}: at most data.size ({cfg.data.size}): one cell per pixel"
        side = max(1, round(node.tile_fraction * cell))  # as JigsawPuzzle.cut_tiles cuts them
        if cfg.data.channels * side * side < 2:
            return (
                f"grid={node.grid}: tiles of {side} px at data.size={cfg.data.size} and "
                f"tile_fraction={node.tile_fraction} hold one value; each tile is normalised "
                "by its own std, so it needs two (a smaller grid or a larger data.size)"
            )
        if node.grid > 3:  # 16! and up: the task samples a pool and says if it runs short
            return None
        available = math.factorial(node.grid**2)
        if node.num_permutations <= available:
            return None
        return (
            f"num_permutations={node.num_permutations}: at most {available}, the "
            f"permutations of a {node.grid}x{node.grid} grid"
        )


@schema("pretext/task/inpainting")
@dataclass
class InpaintingConfig(TaskConfig):
    channels: int = setting("image channels the decoder paints", same_as="data.channels")
    mask: str = setting("the hidden region", choices=MASK_TYPES)
    overlap: int = setting("ring of visible pixels around the hole that the loss weighs more", ge=0)
    overlap_weight: float = setting("the ring's loss weight", ge=0)
    decoder_levels: int = setting("2x upsampling stages back to the image size", ge=1)
    adversarial_weight: float = setting("> 0 adds the adversarial term and a discriminator", ge=0)


@schema("pretext/task/mlm")
@dataclass
class MaskedLanguageModelConfig(TaskConfig):
    probability: float = setting("share of tokens selected (BERT: 0.15; 80/10/10)", gt=0, lt=1)
    whole_word: bool = setting("select whole words (needs backbone.tokenizer.kind=wordpiece)")


@schema("pretext/task/clm")
@dataclass
class CausalLanguageModelConfig(TaskConfig):
    context: int | None = setting(
        "each token attends to at most this many before it (banded mask); null: all", ge=1
    )
    direction: str = setting(
        "forward: the future from the past; backward: the past from the present",
        choices=("forward", "backward"),
    )


@schema("pretext/task/supervised")
@dataclass
class SupervisedConfig(TaskConfig):
    num_classes: int = setting("classes of the labels", same_as="data.num_classes")


@schema("pretext/task/simclr")
@dataclass
class SimCLRConfig(TaskConfig):
    temperature: float = setting("NT-Xent's softmax temperature", gt=0)
    projection_dim: int = setting("features out of the projection head (the loss's space)", ge=1)
    hidden_dim: int = setting("units of the projection head's hidden layer", ge=1)
    crop_scale: list[float] = setting(
        "[min, max] area share of the random resized crop",
        check=lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1,
        accepts="[min, max]: two numbers with 0 < min <= max <= 1",
    )
    crop_ratio: list[float] = setting(
        "[min, max] aspect ratio (width / height) of the random resized crop",
        check=lambda v: len(v) == 2 and 0 < v[0] <= v[1],
        accepts="[min, max]: two numbers with 0 < min <= max",
    )
    hflip: bool = setting("mirror half the views (false where mirroring changes the class)")
    jitter_strength: float = setting("colour jitter strength s (brightness 0.8s, hue 0.2s)", ge=0)
    jitter_prob: float = setting("share of views colour-jittered", ge=0, le=1)
    grayscale_prob: float = setting("share of views turned grayscale (RGB only)", ge=0, le=1)


@schema("pretext/task/mae")
@dataclass
class MaskedAutoencoderConfig(TaskConfig):
    channels: int = setting("image channels the decoder paints", same_as="data.channels")
    image_size: int = setting("the image side", same_as="data.size")
    patch_size: int | None = setting(
        "the ViT's patch side (backbone.patch_size; null: the backbone is no ViT)"
    )
    mask_ratio: float = setting("share of patches hidden from the encoder", gt=0, lt=1)
    decoder_width: int = setting("features per token in the decoder", ge=1)
    decoder_depth: int = setting("Transformer blocks in the decoder", ge=1)
    decoder_heads: int = setting(
        "decoder attention heads", ge=1, divides="pretext.task.decoder_width"
    )
    norm_pix: bool = setting("reconstruct each patch's pixels normalised by its mean and std")

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        """A ViT backbone, and at least one visible patch."""
        if node.patch_size is None:
            return (
                f"patch_size=null: pretext=mae needs a ViT backbone (backbone=vit_tiny), "
                f"not backbone={cfg.backbone.name}"
            )
        patches = (node.image_size // node.patch_size) ** 2
        if int(patches * (1 - node.mask_ratio)) < 1:
            return (
                f"mask_ratio={node.mask_ratio}: hides all {patches} patches "
                f"(at most {1 - 1 / patches:.4g})"
            )
        return None
