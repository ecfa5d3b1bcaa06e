import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, read_metrics, run_cli

from ssl_lab.downstream.knn import knn_predict


def test_features_equal_to_one_hot_labels_are_classified_perfectly():
    bank_labels, query_labels = torch.arange(50) % 5, torch.randint(0, 5, (30,))
    predicted = knn_predict(
        F.one_hot(bank_labels).float(), bank_labels, F.one_hot(query_labels).float(), num_classes=5
    )
    assert torch.equal(predicted, query_labels)


def _one_close_neighbour_against_five_far_ones() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query (1, 0): one class-0 neighbour at cosine 0.99, five class-1 neighbours at cosine 0.9."""
    close = torch.tensor([[0.99, (1 - 0.99**2) ** 0.5]])
    far = torch.tensor([[0.9, (1 - 0.9**2) ** 0.5]]).repeat(5, 1)
    return torch.cat([close, far]), torch.tensor([0, 1, 1, 1, 1, 1]), torch.tensor([[1.0, 0.0]])


def test_k_one_follows_the_nearest_neighbour_and_a_large_k_the_majority():
    bank, labels, query = _one_close_neighbour_against_five_far_ones()
    assert knn_predict(bank, labels, query, 2, k=1, temperature=1.0).item() == 0
    assert knn_predict(bank, labels, query, 2, k=6, temperature=1.0).item() == 1


def test_a_low_temperature_lets_the_closest_neighbour_outvote_the_rest():
    bank, labels, query = _one_close_neighbour_against_five_far_ones()
    assert knn_predict(bank, labels, query, 2, k=6, temperature=0.01).item() == 0
    assert knn_predict(bank, labels, query, 2, k=6, temperature=10.0).item() == 1


def test_k_beyond_the_bank_is_clamped_and_batching_does_not_change_predictions():
    generator = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(40, 8, generator=generator), torch.randn(25, 8, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    whole = knn_predict(bank, labels, queries, 4, k=1000, batch_size=1000)
    assert torch.equal(whole, knn_predict(bank, labels, queries, 4, k=1000, batch_size=3))
    assert torch.equal(whole, knn_predict(bank, labels, queries, 4, k=40, batch_size=7))


@pytest.mark.slow
def test_sweep_of_pretext_by_nonparametric_evaluators_reports_each_score(tmp_path):
    # No `downstream.epochs`: these evaluators do not train, so the key is not theirs to override.
    tiny = [a for a in TINY if not a.startswith("downstream.")]
    result = run_cli(
        tmp_path,
        "-m",
        "pretext=none,rotation",
        "downstream=knn,fewshot,kmeans",
        "data.labels_per_class=10",
        *tiny,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {
        (m["pretext"], m["downstream"]): m for m in read_metrics(tmp_path / "outputs" / "multirun")
    }
    assert sorted(runs) == [
        (p, d) for p in ("none", "rotation") for d in ("fewshot", "kmeans", "knn")
    ]
    for pretext in ("none", "rotation"):
        knn, fewshot, kmeans = (runs[pretext, d] for d in ("knn", "fewshot", "kmeans"))
        assert knn["score_name"] == "test/acc" and knn["knn_k"] == 100  # clamped to 10 x 10 labels
        assert knn["score"] > 0.3  # chance: 0.1
        assert fewshot["score_name"] == "fewshot/5way_5shot"
        assert {"fewshot_5way_1shot", "fewshot_5way_1shot_ci95", "score_ci95"} <= fewshot.keys()
        assert fewshot["fewshot_5way_1shot"] > 0.3 and fewshot["score"] > 0.4  # chance: 0.2
        assert 0 < fewshot["score_ci95"] < 0.05
        assert kmeans["score_name"] == "test/nmi" and "test_ari" in kmeans
        assert kmeans["score"] > 0.2 and kmeans["test_ari"] > 0.1  # chance: about 0
