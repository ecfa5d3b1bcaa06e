"""A class-per-folder tree of image files, or a tar archive of one: the layout most image data
comes in. Either ``root/<class>/*.jpg`` (split by ``split_seed``) or ``root/train/<class>/...`` with
``root/test/...`` and optionally ``root/val/...`` (the tree's own splits).

Decoding tens of thousands of files takes a while, so it happens once, on a thread pool (Pillow
decodes without the GIL), and the arrays are cached under ``cache_dir``, keyed by the tree's path,
its file list with sizes and mtimes, and the decoding settings: the next run reads one file.
"""

import hashlib
import logging
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ssl_lab.atomic import atomic_path, build_once
from ssl_lab.data.images import InMemoryImageDataModule
from ssl_lab.data.schema import ON_CORRUPT
from ssl_lab.errors import SslLabError

log = logging.getLogger("ssl_lab")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLITS = ("train", "val", "test")
# What Pillow raises for a truncated, corrupt or non-image file.
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def list_images(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """The class names (the train folder's subfolders, sorted) and, per split, its image files
    with their class index. A tree without ``train/`` is one flat train split."""
    folders = (
        {s: root / s for s in SPLITS if (root / s).is_dir()}
        if (root / "train").is_dir()
        else {"train": root}
    )
    classes = sorted(d.name for d in folders["train"].iterdir() if d.is_dir())
    if not classes:
        raise SslLabError(f"data.root: no class folders in {folders['train']}")
    files = {}
    for split, folder in folders.items():
        unknown = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in classes)
        if unknown:
            raise SslLabError(
                f"data.root: {folder} has classes that train lacks: {', '.join(unknown)}"
            )
        files[split] = [
            (path, index)
            for index, name in enumerate(classes)
            for path in sorted((folder / name).rglob("*"))
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        ]
        if not files[split]:
            raise SslLabError(f"data.root: no image files under {folder}")
    return classes, files


def extract_once(archive: Path, into: Path) -> Path:
    """The tree inside a tar archive, extracted on first use into ``into`` (keyed by the
    archive's path, size and mtime; built by ``build_once``, so concurrent jobs never see half a
    tree). An archive holding one top-level folder yields that folder."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = into / key.hexdigest()[:16]

    def extract(staging: Path) -> None:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")

    try:
        build_once(target, extract)
    except (tarfile.TarError, OSError) as err:
        raise SslLabError(f"data.root: cannot extract {archive}: {err}") from err
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


class ImageFolderDataModule(InMemoryImageDataModule):
    """Images are converted to L or RGB by ``channels``, centre-cropped to square and resized to
    ``size``. An unreadable file is skipped and counted (``on_corrupt: skip``; the count is
    ``skipped_images``, recorded in metrics.json) or stops the run, naming the file
    (``on_corrupt: stop``)."""

    def __init__(
        self, root: str, cache_dir: str, on_corrupt: str = "skip", threads: int = 4, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if on_corrupt not in ON_CORRUPT:
            raise SslLabError(f"data.on_corrupt={on_corrupt}: choose skip or stop")
        self.root, self.cache_dir = Path(root).expanduser(), Path(cache_dir).expanduser()
        self.on_corrupt, self.threads = on_corrupt, threads
        self.skipped_images = 0

    def _tree(self) -> Path:
        if self.root.is_dir():
            return self.root
        if self.root.is_file():
            return extract_once(self.root, self.cache_dir / "extracted")
        raise SslLabError(f"data.root: no such folder or archive: {self.root}")

    def _decode(self, path: Path) -> np.ndarray | None:
        mode = "L" if self.channels == 1 else "RGB"
        try:
            with Image.open(path) as image:
                image.draft(mode, (self.size, self.size))  # JPEG: decode large images scaled down
                image = ImageOps.fit(
                    image.convert(mode), (self.size, self.size), Image.Resampling.BILINEAR
                )
                return np.asarray(image)
        except UNREADABLE as err:
            if self.on_corrupt == "stop":
                raise SslLabError(f"data.root: cannot read image {path}: {err}") from err
            return None

    def _read(self, files: dict[str, list[tuple[Path, int]]]) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"skipped": np.zeros((), dtype=np.int64)}
        with ThreadPoolExecutor(self.threads) as pool:
            for split, entries in files.items():
                images = list(pool.map(self._decode, [path for path, _ in entries]))
                kept = [i for i, image in enumerate(images) if image is not None]
                if not kept:
                    raise SslLabError(
                        f"data.root: none of the {len(entries)} images of the "
                        f"{split} split is readable (first: {entries[0][0]})"
                    )
                arrays["skipped"] += len(entries) - len(kept)
                stacked = np.stack([images[i] for i in kept])  # (N, H, W) or (N, H, W, 3)
                arrays[f"x_{split}"] = np.ascontiguousarray(
                    stacked if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
                )
                arrays[f"y_{split}"] = np.array([entries[i][1] for i in kept], dtype=np.int64)
        return arrays

    def _cache_file(self, tree: Path, files: dict[str, list[tuple[Path, int]]]) -> Path:
        key = hashlib.sha256(
            f"{tree.resolve()}|{self.size}|{self.channels}|{self.on_corrupt}".encode()
        )
        for split, entries in files.items():
            for path, index in entries:
                stat = path.stat()
                key.update(
                    f"\n{split}|{path.relative_to(tree)}|{index}|{stat.st_size}|"
                    f"{stat.st_mtime_ns}".encode()
                )
        return self.cache_dir / f"image_folder-{key.hexdigest()[:16]}.npz"

    def load_arrays(self) -> dict[str, np.ndarray]:
        tree = self._tree()
        classes, files = list_images(tree)
        if len(classes) != self.num_classes:
            raise SslLabError(
                f"data.num_classes={self.num_classes}, but {tree} has {len(classes)} class folders"
            )
        cache = self._cache_file(tree, files)
        if cache.is_file():
            with np.load(cache) as npz:
                arrays = {key: npz[key] for key in npz.files}
        else:
            arrays = self._read(files)
            with atomic_path(cache) as tmp, tmp.open("wb") as out:
                np.savez(out, **arrays)
        self.skipped_images = int(arrays["skipped"])
        if self.skipped_images:
            log.warning("data.root: skipped %d unreadable images under %s", arrays["skipped"], tree)
        return {key: value for key, value in arrays.items() if key != "skipped"}
