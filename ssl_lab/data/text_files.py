"""Labelled text from TSV/CSV files (a label column and a text column, any language); unlabelled
text for pretraining comes from ``unlabelled_files`` as for every text dataset."""

from typing import Any

from ssl_lab.data.text_readers import read_labelled
from ssl_lab.data.texts import InMemoryTextDataModule
from ssl_lab.errors import SslLabError


class TextFileDataModule(InMemoryTextDataModule):
    """``train_file`` (and ``val_file``/``test_file`` if the corpus has them; otherwise carved
    from train by ``split_seed``). Label names (the label column's values) are mapped to 0..K-1
    in sorted order (numerically when they are numbers), unless ``class_names`` lists them."""

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

    def load_texts(self) -> dict[str, Any]:
        read = {
            split: read_labelled(path, self.label_column, self.text_column, self.header)
            for split, path in self.files.items()
            if path
        }
        if self.class_names is None:
            self.class_names = sorted(
                {name for _, names in read.values() for name in names},
                key=lambda n: (
                    not n.lstrip("-").isdigit(),
                    int(n) if n.lstrip("-").isdigit() else 0,
                    n,
                ),
            )
        index = {name: i for i, name in enumerate(self.class_names)}
        out: dict[str, Any] = {}
        for split, (texts, names) in read.items():
            unknown = sorted(set(names) - set(index))
            if unknown:
                raise SslLabError(
                    f"{self.files[split]}: labels {unknown[:3]} are not among "
                    f"data.class_names={self.class_names}"
                )
            out[split] = (texts, [index[n] for n in names])
        return out
