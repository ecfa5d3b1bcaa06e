"""Reading text corpora from files: one clear line for a missing, empty or undecodable file."""

import csv
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


def read_labelled(path: str | Path, label_column: int, text_column: int, header: bool,
                  labels: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
    """(texts, label strings) from a TSV (``.tsv``) or CSV file."""
    delimiter = "\t" if Path(path).suffix == ".tsv" else ","
    rows = list(csv.reader(_read(path).splitlines(), delimiter=delimiter, quoting=csv.QUOTE_NONE
                           if delimiter == "\t" else csv.QUOTE_MINIMAL))[int(header):]
    texts, names = [], []
    for number, row in enumerate(rows, start=1 + int(header)):
        if not row:
            continue
        try:
            names.append(row[label_column].strip())
            texts.append(row[text_column])
        except IndexError:
            raise SslLabError(f"{path}, line {number}: expected a label column {label_column} and "
                              f"a text column {text_column}, found {len(row)} columns") from None
    return texts, names


def read_unlabelled(path: str | Path) -> list[str]:
    """Texts for pretraining only: the lines of a ``.txt`` file, or the last column of each row
    of a ``.tsv``/``.csv`` file (labels there are ignored)."""
    if Path(path).suffix in (".tsv", ".csv"):
        return read_labelled(path, label_column=-1, text_column=-1, header=False)[0]
    return read_lines(path)
