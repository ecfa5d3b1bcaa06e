"""The no-deep-learning reference: a scikit-learn classifier on the same labelled subset, on raw
(normalised, flattened) pixels for images, on TF-IDF n-grams for text (character 1-3-grams for
Chinese, word 1-2-grams for space-separated languages). A pretrained representation that cannot
beat it has learned nothing a linear model on the surface could not find.

The TF-IDF vocabulary and weights are fitted on the labelled subset alone, as the classifier is:
fitting them on the unlabelled text too would be pretraining of a kind, and this is the
reference without any."""

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from sklearn.base import ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_accuracy

from ssl_lab.downstream.task import DownstreamTask

TEXT_FEATURES = ("auto", "char", "word")  # downstream.text_features
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _flat_arrays(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return inputs.flatten(1), labels


def text_analyzer(texts: Sequence[str], choice: str = "auto") -> str:
    """``char`` or ``word``: for ``auto``, char n-grams where Chinese characters are a third or
    more of the non-space characters (Chinese has no spaces between words), else word n-grams."""
    if choice != "auto":
        return choice
    joined = "".join("".join(t.split()) for t in texts)
    return "char" if joined and len(_HAN.findall(joined)) >= len(joined) / 3 else "word"


def tfidf(analyzer: str) -> TfidfVectorizer:
    """Character 1-3-grams (Chinese) or word 1-2-grams, sublinear term frequencies."""
    if analyzer == "char":
        return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    return TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)


class ClassicalBaseline(DownstreamTask):
    """Ignores the backbone. ``requires_pretext`` (``none``) is declared in the config so the
    pipeline can refuse, before pretraining, a run whose pretraining this task would ignore."""

    def __init__(self, classifier: ClassifierMixin, text_features: str = "auto") -> None:
        self.classifier, self.text_features = classifier, text_features

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        if data.modality == "text":
            return self._evaluate_text(data)
        x_train, y_train = _flat_arrays(data.labelled_dataset())
        x_test, y_test = _flat_arrays(data.splits["test"])
        self.classifier.fit(x_train.numpy(), y_train.numpy())
        predicted = torch.as_tensor(self.classifier.predict(x_test.numpy()))
        accuracy = multiclass_accuracy(predicted, y_test, data.num_classes, average="micro")
        return {"score": float(accuracy), "score_name": "test/acc"}

    def _evaluate_text(self, data: pl.LightningDataModule) -> dict[str, Any]:
        texts, labels = data.texts["train"]
        chosen = data.labelled_indices.tolist()
        train_texts = [texts[i] for i in chosen]
        analyzer = text_analyzer(train_texts, self.text_features)
        vectorizer = tfidf(analyzer)
        x_train = vectorizer.fit_transform(train_texts)
        self.classifier.fit(x_train, [labels[i] for i in chosen])
        test_texts, test_labels = data.texts["test"]
        predicted = torch.as_tensor(self.classifier.predict(vectorizer.transform(test_texts)))
        accuracy = multiclass_accuracy(
            predicted, torch.tensor(test_labels), data.num_classes, average="micro"
        )
        return {
            "score": float(accuracy),
            "score_name": "test/acc",
            "text_features": f"tfidf {analyzer} " + ("1-3" if analyzer == "char" else "1-2"),
            "tfidf_features": len(vectorizer.vocabulary_),
        }
