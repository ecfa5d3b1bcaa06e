"""The schema of ``data``: what every dataset declares (the splits, the labelled subset, the
batches), then images and text, then each data module's own arguments. A YAML names its schema in
its defaults list (``data/_common.yaml``: ``- /schema/data/image@_here_``)."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from ssl_lab.schema import partial_setting, schema, setting, show

ON_CORRUPT = ("skip", "stop")  # data=image_folder: what an unreadable image does


def _epoch_length(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, int) and value >= 1)


@schema("data/base", base_for="data")
@dataclass
class DataConfig:
    """What every dataset declares."""

    _target_: str = setting("the LightningDataModule")
    name: str = setting("the choice's name: metrics.json, the report and the cache use it")
    modality: str = setting(
        "image or text: pretext, backbone and downstream must match", choices=("image", "text")
    )
    num_classes: int = setting("classes of the labels", ge=2)
    batch_size: int = setting("examples per batch (under DDP: over all processes)", ge=1)
    labels_per_class: int | None = setting(
        "transfer trains on this many labelled examples per class", ge=1
    )
    label_fraction: float | None = setting(
        "... or on this fraction of each class (null, null: all)", gt=0, le=1
    )
    fixed_epoch_length: Any = setting(
        "true: a transfer epoch draws as many examples as the train split, however few labels; "
        "a number: that many; false: one pass over the labelled subset",
        accepts="true, false or an integer >= 1",
        check=_epoch_length,
    )
    val_fraction: float = setting("share of train carved out for validation", gt=0, lt=1)
    test_fraction: float = setting(
        "share carved out for test, if the dataset has no test split", gt=0, lt=1
    )
    split_seed: int = setting("fixes train/val/test", ge=0)
    seed: int = setting("picks the labelled subset (the run's seed)", ge=0)
    num_workers: int = setting("DataLoader worker processes", ge=0)
    augment: Any = setting("transfer-time augmentation (images), or null")

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        """One label budget at a time, and splits that leave something to train on."""
        if node.labels_per_class is not None and node.label_fraction is not None:
            return (
                f"label_fraction={node.label_fraction}: null when data.labels_per_class is set "
                f"({node.labels_per_class}): one of the two"
            )
        if node.val_fraction + node.test_fraction >= 1:
            return (
                f"val_fraction={node.val_fraction}: below 1 - data.test_fraction "
                f"({node.test_fraction}), or nothing is left to train on"
            )
        return None


@dataclass
class AugmentConfig:
    _target_: str = setting("the batched augmentation module")
    crop_padding: int = setting("random shifts of up to this many pixels (0: none)", ge=0)
    hflip: bool = setting("random horizontal flips")


@schema("data/image", base_for="data")
@dataclass
class ImageDataConfig(DataConfig):
    channels: int = setting("1: grayscale, 3: RGB", choices=(1, 3))
    size: int = setting("images are resized to size x size pixels", ge=1)
    batch_fetch: bool = setting("fetch each batch by one indexing (false: per example, then stack)")
    augment: AugmentConfig | None = setting("transfer-time augmentation (finetune), or null")
    on_device: Any = setting(
        "the splits live on the accelerator and batches are drawn there (auto: if they fit)",
        accepts="auto, true or false",
        check=lambda value: value == "auto" or isinstance(value, bool),
    )


@schema("data/torchvision")
@dataclass
class TorchvisionDataConfig(ImageDataConfig):
    dataset: Any = partial_setting("the torchvision dataset class")
    root: str = setting("where the dataset is (or is downloaded to)")
    download: bool = setting("fetch it into root once; runs never download by surprise")
    split_args: Any = setting("the dataset's arguments for each split")


@schema("data/image_folder")
@dataclass
class ImageFolderDataConfig(ImageDataConfig):
    root: str = setting("a class-per-folder tree, or a .tar/.tar.gz of one")
    cache_dir: str = setting("decoded arrays, keyed by the files, size and channels")
    on_corrupt: str = setting("an unreadable image: skip (counted) or stop", choices=ON_CORRUPT)
    threads: int = setting("decoding threads (first run only)", ge=1)


@schema("data/npz")
@dataclass
class NpzDataConfig(ImageDataConfig):
    path: str = setting("a .npz with x_train, y_train and optionally x_test, y_test")


@dataclass
class PromptConfig:
    patterns: list[str] | None = setting("cloze patterns, each with {text} and [MASK] once")
    verbalizers: list[str] | None = setting("one token per label, in label order")


@schema("data/text", base_for="data")
@dataclass
class TextDataConfig(DataConfig):
    unlabelled_files: list[Any] = setting(
        "more text for pretraining only: files, or {path: FILE, format: lines | last_column | "
        "tagged}",
        empty=True,
    )
    drop_test_overlap: bool = setting("drop pretraining texts that also occur in the test split")
    class_names: list[str] | None = setting("the labels' names, in label order")
    tokenizer: Any = setting("the backbone's tokenizer settings (backbone.tokenizer)")
    prompt: PromptConfig = setting("patterns and verbalizers for downstream=prompt")


@schema("data/text_files")
@dataclass
class TextFileDataConfig(TextDataConfig):
    train_file: str = setting("the labelled TSV (or .csv) to train on")
    val_file: str | None = setting("its own validation file (null: carved from train)")
    test_file: str | None = setting("its own test file (null: carved from train)")
    label_column: int = setting("the label's column (negative: from the end)")
    text_column: int = setting("the text's column (negative: from the end)")
    header: bool = setting("the first row names the columns")


DIGIT_SOURCES = ("digits", "mnist")  # data=digit_canvas: where the digits come from


def _pair(value: Any) -> bool:
    items = list(value) if value is not None and not isinstance(value, str) else []
    return (
        len(items) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items)
        and items[0] <= items[1]
    )


@schema("data/detection", base_for="data")
@dataclass
class DetectionDataConfig(ImageDataConfig):
    """Images with boxes (``ssl_lab/data/detection.py``)."""

    boxes: bool = setting("the images come with boxes (downstream=detection needs them)")
    labelled_images: int | None = setting(
        "transfer trains on the boxes of this many train images, picked by seed "
        "(or labels_per_class / label_fraction, by the class of each image's largest box)",
        ge=1,
    )

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        if node.labelled_images is not None and (
            node.labels_per_class is not None or node.label_fraction is not None
        ):
            return (
                f"labelled_images={node.labelled_images}: null when data.labels_per_class or "
                "data.label_fraction is set: one label budget at a time"
            )
        return DataConfig.check(node, cfg)


@dataclass
class CanvasCountsConfig:
    train: int = setting("train canvases (pretraining sees all, transfer the labelled ones)", ge=1)
    val: int = setting("validation canvases", ge=1)
    test: int = setting("test canvases (the mAP is counted on them)", ge=1)


@schema("data/digit_canvas")
@dataclass
class DigitCanvasDataConfig(DetectionDataConfig):
    source: str = setting(
        "the digits: scikit-learn's (no download) or MNIST", choices=DIGIT_SOURCES
    )
    mnist_path: str = setting("MNIST as .npz (x_train, y_train, x_test, y_test), for source=mnist")
    canvases: CanvasCountsConfig = setting("canvases per split")
    digits_per_canvas: Any = setting(
        "fewest and most digits on a canvas",
        accepts="[min, max], integers, 1 <= min <= max",
        check=_pair,
    )
    digit_size: Any = setting(
        "shortest and longest side of a pasted digit, pixels (at most data.size)",
        accepts="[min, max], integers, 1 <= min <= max",
        check=_pair,
    )
    ink_threshold: float = setting(
        "pixels at or below this (in [0, 1]) are cleared: the boxes are tight around the rest",
        ge=0,
        lt=1,
    )

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        if node.digit_size[1] > node.size:
            return (
                f"digit_size={show(node.digit_size)}: the longest side at most data.size "
                f"({node.size})"
            )
        return DetectionDataConfig.check(node, cfg)


@schema("data/boxes")
@dataclass
class BoxesDataConfig(DetectionDataConfig):
    num_classes: int = setting("classes of the boxes: the length of data.class_names", ge=1)
    root: str = setting("a folder of images and their annotations, or a .tar/.tar.gz of one")
    annotations: str = setting(
        "in root: a CSV (image,xmin,ymin,xmax,ymax,label) or a folder of Pascal VOC .xml files"
    )
    cache_dir: str = setting("where an archive is extracted (once)")
    class_names: list[str] = setting("the classes, in label order")
    class_map: dict[str, str] = setting(
        "labels renamed before they are checked against class_names (Dead: Tree)", empty=True
    )
    tile: int = setting("side of the square tiles cut from each image, pixels", ge=1)
    tile_stride: int | None = setting("pixels between tile starts (null: tile, no overlap)", ge=1)
    min_visible: float = setting(
        "a box is kept in a tile if this share of its area is inside", gt=0, le=1
    )
    val_images: list[str] | None = setting("images for validation, by name (null: carved)")
    test_images: list[str] | None = setting("images for test, by name (null: carved)")

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        if len(node.class_names) != node.num_classes:
            return (
                f"num_classes={node.num_classes}: equal to the length of data.class_names "
                f"({len(node.class_names)})"
            )
        return DetectionDataConfig.check(node, cfg)


@schema("data/parallel")
@dataclass
class ParallelTextDataConfig:
    """Sentence pairs for translation: no classes, no label budget; ``train_pairs`` instead."""

    _target_: str = setting("the LightningDataModule")
    name: str = setting("the choice's name: metrics.json, the report and the cache use it")
    modality: str = setting("text: sentence pairs", choices=("text",))
    train_file: str = setting("source<TAB>target lines (more columns ignored)")
    test_file: str | None = setting("its own test pairs (null: carved from train_file)")
    languages: list[str] = setting("the languages of the first and second column (zh, en, ...)")
    direction: str = setting(
        "which column is the source: first-second or second-first (zh-en or en-zh)",
        accepts="<first language>-<second language>, or the reverse",
        check=lambda value: isinstance(value, str) and value.count("-") == 1,
    )
    train_pairs: int | None = setting(
        "the transfer trains on this many train pairs, picked by seed (null: all)", ge=1
    )
    batch_size: int = setting("pairs (or pretraining texts) per batch", ge=1)
    fixed_epoch_length: Any = setting(
        "true: a transfer epoch draws as many pairs as the train split holds, however few "
        "train_pairs; a number: that many; false: one pass over the train_pairs",
        accepts="true, false or an integer >= 1",
        check=_epoch_length,
    )
    val_fraction: float = setting("share of the pairs carved out for validation", gt=0, lt=1)
    test_fraction: float = setting("share carved out for test, without a test_file", gt=0, lt=1)
    split_seed: int = setting("fixes the test set (whole pairs) and the val set", ge=0)
    seed: int = setting("picks the train pairs (the run's seed)", ge=0)
    num_workers: int = setting("DataLoader worker processes", ge=0)
    unlabelled_files: list[Any] = setting(
        "monolingual text for pretraining, either language: files, or {path: FILE, format: "
        "lines | last_column | tagged}",
        empty=True,
    )
    drop_test_overlap: bool = setting("drop pretraining sentences that occur in the test set")
    tokenizer: Any = setting("the backbone's tokenizer settings (backbone.tokenizer)")

    @staticmethod
    def check(node: DictConfig, cfg: DictConfig) -> str | None:
        """Two languages, a direction between them, splits that leave pairs to train on."""
        if len(node.languages) != 2:
            return f"languages={list(node.languages)}: two, the first and second column's"
        first, second = node.languages
        if node.direction not in (f"{first}-{second}", f"{second}-{first}"):
            return (
                f"direction={node.direction}: {first}-{second} or {second}-{first} "
                f"(data.languages=[{first}, {second}])"
            )
        if node.val_fraction + node.test_fraction >= 1:
            return f"val_fraction={node.val_fraction}: below 1 - data.test_fraction"
        return None
