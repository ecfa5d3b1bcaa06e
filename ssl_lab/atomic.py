"""Writes that a reader (or a crashed job) never sees half-done: a temp name, then a rename."""

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def build_once(entry: Path, build: Callable[[Path], None]) -> bool:
    """Make sure directory ``entry`` exists, complete; return True if it already did (a hit).

    ``build`` fills a private staging directory, which is renamed onto ``entry`` only when it is
    complete, so readers never see half an entry. A file lock makes racing jobs wait for the one
    that builds, then reuse its result; it dies with its holder, so a killed builder never blocks
    the next, which also clears the staging directories killed builders left.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if entry.is_dir():
            return True
        for stale in entry.parent.glob(f".{entry.name}.*.staging"):  # left by killed builders
            shutil.rmtree(stale, ignore_errors=True)
        staging = entry.with_name(f".{entry.name}.{os.getpid()}.staging")
        staging.mkdir()
        try:
            build(staging)
            os.rename(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return False
