"""A user's own detection data: images in a folder (or a .tar/.tar.gz of one) and their boxes, in a
CSV (``image,xmin,ymin,xmax,ymax,label``, pixels, a header line) or Pascal VOC XML files.

Large images are cut into square tiles of ``tile`` pixels every ``tile_stride`` pixels (the last
tile of a row or column ends at the image's edge; an image smaller than a tile is padded with
black), and each tile is resized to ``size``. A box is clipped to each tile it touches and kept
there if at least ``min_visible`` of its area is inside; the others are dropped there and counted
(``dropped_boxes``). Splits take whole images (``val_images``/``test_images`` by name, or carved
by ``split_seed``), so no test tile shares an image with a training tile.

Every mistake in the input stops the run in one line, before any training: a box outside its
image or with ``xmax <= xmin`` (or ``ymax <= ymin``), a CSV without one of the columns, an image
named in the annotations that is not there, a label not in ``class_names`` (after
``class_map``). An image without boxes (in the folder but not in the CSV, a CSV row with empty
coordinates, a VOC file without objects) is background: allowed, and counted
(``background_images``).
"""

import csv
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ssl_lab.data.detection import Annotated, DetectionDataModule
from ssl_lab.data.image_folder import IMAGE_SUFFIXES, extract_once
from ssl_lab.data.in_memory import carve_splits
from ssl_lab.errors import SslLabError

log = logging.getLogger("ssl_lab")

COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax", "label")
COORDINATES = COLUMNS[1:5]


@dataclass
class ImageBoxes:
    """One image's file and its boxes (``xmin, ymin, xmax, ymax`` in pixels) and labels."""

    path: Path
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # each box's place in the annotations


def _number(value: str, where: str, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SslLabError(f"{where}: {column}={value!r} is not a number") from None
    if not np.isfinite(number):
        raise SslLabError(f"{where}: {column}={value!r} is not a finite number")
    return number


def read_csv(path: Path, tree: Path) -> dict[str, ImageBoxes]:
    """Boxes by image name from a CSV with a header naming ``COLUMNS`` (others are ignored); a
    row whose four coordinates are empty names an image without boxes."""
    images: dict[str, ImageBoxes] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SslLabError(
                f"data.annotations={path.name}: no column {', '.join(missing)} "
                f"(the header must name {','.join(COLUMNS)}; it has {','.join(header) or 'none'})"
            )
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            where = f"{path.name} line {line}"
            name = (row["image"] or "").strip()
            if not name:
                raise SslLabError(f"{where}: no image name")
            entry = images.setdefault(name, ImageBoxes(tree / name))
            values = [(row[c] or "").strip() for c in COORDINATES]
            if not any(values):
                continue  # the image is listed, without boxes: background
            box = tuple(_number(v, where, c) for v, c in zip(values, COORDINATES))
            entry.boxes.append(box)
            entry.labels.append((row["label"] or "").strip())
            entry.where.append(where)
    return images


def read_voc(folder: Path, tree: Path) -> dict[str, ImageBoxes]:
    """Boxes by image name from Pascal VOC ``.xml`` files (``filename``, ``object/name``,
    ``object/bndbox``); a file without objects names an image without boxes."""
    images: dict[str, ImageBoxes] = {}
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise SslLabError(f"data.annotations={folder}: no .xml files there")
    for xml in files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as err:
            raise SslLabError(f"{xml.name}: not readable XML: {err}") from None
        name = (root.findtext("filename") or "").strip()
        if not name:
            raise SslLabError(f"{xml.name}: no <filename>")
        entry = images.setdefault(name, ImageBoxes(tree / name))
        for n, obj in enumerate(root.iter("object"), start=1):
            where = f"{xml.name} object {n}"
            box = obj.find("bndbox")
            if box is None:
                raise SslLabError(f"{where}: no <bndbox>")
            values = [(box.findtext(c) or "").strip() for c in COORDINATES]
            entry.boxes.append(tuple(_number(v, where, c) for v, c in zip(values, COORDINATES)))
            entry.labels.append((obj.findtext("name") or "").strip())
            entry.where.append(where)
    return images


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Where tiles start along one side: every ``stride``, the last ending at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tile_boxes(
    boxes: np.ndarray, x0: int, y0: int, tile: int, min_visible: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """The boxes clipped to the tile at ``(x0, y0)``, in its coordinates, those that keep at
    least ``min_visible`` of their area inside; which boxes those are; and how many others
    touch the tile (dropped there)."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, bool), 0
    clipped = np.clip(boxes - np.array([x0, y0, x0, y0], dtype=np.float32), 0, tile)
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = (inside > 0) & (inside >= min_visible * area)
    return clipped[kept], kept, int(((inside > 0) & ~kept).sum())


class BoxesDataModule(DetectionDataModule):
    def __init__(
        self,
        root: str,
        annotations: str,
        class_names: list[str],
        cache_dir: str,
        class_map: dict[str, str] | None = None,
        tile: int = 256,
        tile_stride: int | None = None,
        min_visible: float = 0.5,
        val_images: list[str] | None = None,
        test_images: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(class_names) != self.num_classes:
            raise SslLabError(
                f"data.num_classes={self.num_classes}: data.class_names has {len(class_names)}"
            )
        self.root, self.annotations = Path(root).expanduser(), annotations
        self.cache_dir = Path(cache_dir).expanduser()
        self.class_names, self.class_map = list(class_names), dict(class_map or {})
        self.tile, self.tile_stride = tile, tile_stride or tile
        self.min_visible = min_visible
        self.val_images, self.test_images = val_images, test_images
        self.dropped_boxes = 0  # box pieces left out of a tile (mostly outside it)
        self.tiles: dict[str, list[tuple[str, int, int]]] = {}  # (image, x0, y0) of each tile

    def _tree(self) -> Path:
        if self.root.is_dir():
            return self.root
        if self.root.is_file():
            return extract_once(self.root, self.cache_dir / "extracted")
        raise SslLabError(f"data.root: no such folder or archive: {self.root}")

    def read_annotations(self) -> dict[str, ImageBoxes]:
        """Every image of the tree with its boxes, checked: one line for the first mistake."""
        tree = self._tree()
        source = tree / self.annotations
        if source.is_dir():
            images = read_voc(source, tree)
        elif source.is_file():
            images = read_csv(source, tree)
        else:
            raise SslLabError(f"data.annotations={self.annotations}: not in {tree}")
        for name, entry in images.items():
            if not entry.path.is_file():
                raise SslLabError(f"data.annotations: image {name} is named but not in {tree}")
        for path in sorted(tree.rglob("*")):
            name = path.relative_to(tree).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES and name not in images:
                images[name] = ImageBoxes(path)  # no annotation: background
        for name, entry in images.items():
            with Image.open(entry.path) as im:
                width, height = im.size
            for (x0, y0, x1, y1), label, where in zip(entry.boxes, entry.labels, entry.where):
                if x1 <= x0 or y1 <= y0:
                    raise SslLabError(
                        f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} of {name}: xmax must exceed "
                        "xmin and ymax ymin"
                    )
                if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                    raise SslLabError(
                        f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} outside image {name} "
                        f"({width}x{height})"
                    )
                mapped = self.class_map.get(label, label)
                if mapped not in self.class_names:
                    raise SslLabError(
                        f"{where}: label {label!r} not in data.class_names "
                        f"{self.class_names} (add it, or map it with data.class_map)"
                    )
        return dict(sorted(images.items()))

    def _split_images(self, names: list[str]) -> dict[str, list[str]]:
        """Whole images per split: those named in ``test_images``/``val_images``, the others
        carved by ``split_seed`` (test first) for a split not named."""
        named = {"test": self.test_images, "val": self.val_images}
        for split, chosen in named.items():
            for name in chosen or []:
                if name not in names:
                    raise SslLabError(f"data.{split}_images: no image {name} in {self.root.name}")
        taken = {n for chosen in named.values() for n in chosen or []}
        rest = [n for n in names if n not in taken]
        carve = {s: getattr(self, f"{s}_fraction") for s, c in named.items() if c is None}
        order = carve_splits(len(rest), carve, self.split_seed)
        splits = {s: [rest[i] for i in index.tolist()] for s, index in order.items()}
        splits.update({s: list(c) for s, c in named.items() if c is not None})
        for split in ("train", "val", "test"):
            if not splits[split]:
                raise SslLabError(f"data={self.name}: no image left for the {split} split")
        return splits

    def _tiles_of(self, entry: ImageBoxes, name: str, split: str) -> Annotated:
        mode = "RGB" if self.channels == 3 else "L"
        with Image.open(entry.path) as im:
            pixels = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        image = torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1)).permute(2, 0, 1)
        height, width = image.shape[-2:]
        t = self.tile
        image = F.pad(image, (0, max(0, t - width), 0, max(0, t - height)))
        boxes = np.array(entry.boxes, dtype=np.float32).reshape(-1, 4)
        classes = np.array(
            [self.class_names.index(self.class_map.get(lb, lb)) for lb in entry.labels], np.int64
        )
        crops, kept_boxes, kept_classes = [], [], []
        scale = self.size / t
        for y0 in tile_starts(height, t, self.tile_stride):
            for x0 in tile_starts(width, t, self.tile_stride):
                crops.append(image[:, y0 : y0 + t, x0 : x0 + t])
                inside, kept, dropped = tile_boxes(boxes, x0, y0, t, self.min_visible)
                kept_boxes.append(inside * scale)
                kept_classes.append(classes[kept])
                self.dropped_boxes += dropped
                self.tiles[split].append((name, x0, y0))
        stacked = torch.stack(crops)
        if t != self.size:
            stacked = F.interpolate(
                stacked, size=(self.size, self.size), mode="bilinear", antialias=True
            )
        return Annotated(stacked.clamp(0, 1).numpy(), kept_boxes, kept_classes)

    def annotated_splits(self) -> dict[str, Annotated]:
        images = self.read_annotations()
        splits = self._split_images(list(images))
        parts = {}
        for split, names in splits.items():
            self.tiles[split] = []
            pieces = [self._tiles_of(images[n], n, split) for n in names]
            parts[split] = Annotated(
                np.concatenate([p.images for p in pieces]),
                [b for p in pieces for b in p.boxes],
                [c for p in pieces for c in p.classes],
            )
        log.info(
            "data=%s: %s; %d box pieces dropped at tile borders",
            self.name,
            ", ".join(
                f"{s} {len(n)} images / {len(self.tiles[s])} tiles" for s, n in splits.items()
            ),
            self.dropped_boxes,
        )
        return parts
