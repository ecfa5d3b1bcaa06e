"""Labelled text from TSV/CSV files (a label column and a text column, any language); unlabelled
text for pretraining comes from ``unlabelled_files`` as for every text dataset."""

from typing import Any

from ssl_lab.data.text_readers import read_labelled
from ssl_lab.data.texts import InMemoryTextDataModule
from ssl_lab.errors import SslLabError


class TextFileDataModule(InMemoryTextDataModule):
    """``train_file`` (and ``val_file``/``test_file`` if the corpus has them; otherwise carved
    from train by ``split_seed``). Labels are the integers 0..K-1, or the names listed in
    ``class_names`` (label i is the i-th name)."""

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        label_column: int = 0,
        text_column: int = -1,
        header: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.label_column, self.text_column, self.header = label_column, text_column, header
        self.skipped_texts = 0  # rows with an empty text, counted (metrics.json) and skipped

    def load_texts(self) -> dict[str, Any]:
        read = {
            split: read_labelled(path, self.label_column, self.text_column, self.header)
            for split, path in self.files.items()
            if path
        }
        self.skipped_texts = sum(rows.empty for rows in read.values())
        if self.class_names is None:
            self.class_names = self._numbered_labels(read)
        index = {name: i for i, name in enumerate(self.class_names)}
        out: dict[str, Any] = {}
        for split, rows in read.items():
            for name, line in zip(rows.labels, rows.lines):
                if name not in index:
                    raise SslLabError(
                        f"{self.files[split]}, line {line}: label {name!r} is not one of "
                        f"data.class_names={self.class_names}"
                    )
            out[split] = (rows.texts, [index[n] for n in rows.labels])
        return out

    def _numbered_labels(self, read: dict[str, Any]) -> list[str]:
        """Without ``class_names``, labels are the integers 0..K-1 (K = ``num_classes``): a
        label that is not one (a stray text from a line without its separator, say) is named
        by file and line rather than becoming a class of its own."""
        allowed = {str(i) for i in range(self.num_classes)}
        for split, rows in read.items():
            for name, line in zip(rows.labels, rows.lines):
                if name not in allowed:
                    raise SslLabError(
                        f"{self.files[split]}, line {line}: label {name!r} is not an integer in "
                        f"0..{self.num_classes - 1} (data.num_classes={self.num_classes}); name "
                        f"other labels in data.class_names"
                    )
        return [str(i) for i in range(self.num_classes)]
