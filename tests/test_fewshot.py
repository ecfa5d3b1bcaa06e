from functools import partial

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.downstream.fewshot import FewShot, linear_predict, prototype_predict, sample_episodes
from ssl_lab.errors import SslLabError

LABELS = torch.arange(8).repeat_interleave(25)  # 8 classes of 25 examples


def _noisy_one_hot(noise: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.one_hot(LABELS).float() + noise * torch.randn(len(LABELS), 8, generator=generator)


def test_episodes_hold_distinct_classes_and_distinct_examples_of_each():
    support, queries = sample_episodes(
        LABELS, ways=5, shots=3, queries=4, episodes=50, generator=torch.Generator().manual_seed(0)
    )
    assert support.shape == (50, 5, 3) and queries.shape == (50, 5, 4)
    drawn = torch.cat([support, queries], dim=2)
    for episode in drawn:
        assert len(episode.flatten().unique()) == 5 * 7
        classes = LABELS[episode]
        assert (classes == classes[:, :1]).all() and len(classes[:, 0].unique()) == 5


def test_classes_too_small_for_an_episode_are_left_out():
    labels = torch.cat([LABELS, torch.full((3,), 8)])  # class 8 has 3 examples
    support, queries = sample_episodes(labels, 5, 1, 15, 200, torch.Generator().manual_seed(0))
    assert not (labels[support] == 8).any() and not (labels[queries] == 8).any()


def test_fewer_eligible_classes_than_ways_is_refused_in_one_line():
    with pytest.raises(SslLabError, match="5-way 5-shot .* only 3 have") as err:
        sample_episodes(torch.arange(3).repeat(30), 5, 5, 15, 10, torch.Generator())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "predict",
    [
        partial(prototype_predict, distance="euclidean"),
        partial(prototype_predict, distance="cosine"),
        partial(linear_predict, steps=20, lr=0.1, optimizer=torch.optim.AdamW),
    ],
)
def test_features_equal_to_one_hot_labels_are_classified_perfectly(predict):
    features = F.one_hot(LABELS).float()
    support, queries = sample_episodes(LABELS, 5, 2, 15, 40, torch.Generator().manual_seed(0))
    predicted = predict(features[support], features[queries.flatten(1)])
    assert torch.equal(predicted, torch.arange(5).repeat_interleave(15).expand(40, -1))


def test_one_hot_features_score_one_for_every_shot_with_the_largest_as_score():
    metrics = FewShot(seed=0, shots=[5, 1], episodes=20).evaluate_features(
        F.one_hot(LABELS).float(), LABELS
    )
    assert metrics["fewshot_5way_1shot"] == metrics["fewshot_5way_5shot"] == 1.0
    assert metrics["score"] == 1.0 and metrics["score_ci95"] == 0.0
    assert metrics["score_name"] == "fewshot/5way_5shot"


def test_confidence_interval_shrinks_with_more_episodes():
    features = _noisy_one_hot(noise=0.6)
    few = FewShot(seed=0, episodes=50).evaluate_features(features, LABELS)
    many = FewShot(seed=0, episodes=1000).evaluate_features(features, LABELS)
    assert 0.2 < many["score"] < 1.0
    assert many["score_ci95"] < few["score_ci95"] / 2  # about sqrt(1000 / 50) = 4.5 times smaller
    assert many["fewshot_5way_1shot_ci95"] < few["fewshot_5way_1shot_ci95"] / 2


def test_the_seed_fixes_the_episodes():
    features = _noisy_one_hot(noise=0.6)
    runs = [FewShot(seed=s, episodes=30).evaluate_features(features, LABELS) for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0]["score"] != runs[2]["score"]
