import torch

from ssl_lab.downstream.kmeans import KMeansClustering


def test_well_separated_classes_give_perfect_nmi_and_ari():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(30)
    centres = 10 * torch.eye(4, 16)
    features = centres[labels] + 0.1 * torch.randn(len(labels), 16, generator=generator)
    metrics = KMeansClustering(seed=0).evaluate_features(features, labels, 4)
    assert metrics["score_name"] == "test/nmi"
    assert abs(metrics["score"] - 1.0) < 1e-6 and abs(metrics["test_ari"] - 1.0) < 1e-6


def test_features_unrelated_to_the_classes_score_near_zero():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(100)
    metrics = KMeansClustering(seed=0, n_init=2).evaluate_features(
        torch.randn(len(labels), 16, generator=generator), labels, 4
    )
    assert metrics["score"] < 0.1 and abs(metrics["test_ari"]) < 0.1
