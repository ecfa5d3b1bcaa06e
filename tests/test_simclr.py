"""SimCLR: views drawn per image on the batch, NT-Xent as the paper writes it, and negatives
gathered across processes so that 2 processes compute the loss of 1."""

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from conftest import TINY, logged, read_metrics, run_cli

from ssl_lab.pretext.simclr import SimCLR, nt_xent
from ssl_lab.pretext.views import RandomViews, crop_flip_grids
from ssl_lab.report import write_report


def nt_xent_by_the_formula(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """The paper's loss, one term at a time: rows k and k + N are the two views of image k;
    l(i, j) = -log exp(sim(i, j)/t) / sum_{m != i} exp(sim(i, m)/t); L = mean over all 2N (i, j)."""
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sims = [
            float(F.cosine_similarity(z[i], z[m], dim=0)) / temperature for m in range(n2) if m != i
        ]
        positive = float(F.cosine_similarity(z[i], z[j], dim=0)) / temperature
        total += -(positive - math.log(sum(math.exp(s) for s in sims)))
    return torch.tensor(total / n2)


@pytest.mark.parametrize("temperature", [0.1, 0.2, 0.5])
def test_nt_xent_equals_the_formula_term_by_term(temperature):
    torch.manual_seed(0)
    z = torch.randn(12, 5, dtype=torch.float64)  # 6 images, 2 views each
    partner = torch.arange(12).roll(6)
    got = nt_xent(z, partner, temperature)
    assert float(got) == pytest.approx(float(nt_xent_by_the_formula(z, temperature)), rel=1e-5)


def test_make_batch_pairs_view_i_with_view_i_plus_b():
    task = SimCLR(8)
    views, partner = task.make_batch((torch.randn(5, 3, 16, 16),))
    assert views.shape == (10, 3, 16, 16)
    assert partner.tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]


def test_views_draw_their_parameters_per_image_not_per_batch():
    torch.manual_seed(0)
    same = torch.randn(1, 3, 32, 32).expand(64, -1, -1, -1).contiguous()
    views = RandomViews(crop_scale=(0.2, 1.0), jitter_strength=0.5, grayscale_prob=0.2)(same)
    flat = views.flatten(1)
    distinct = torch.cdist(flat, flat)[~torch.eye(64, dtype=torch.bool)]
    assert distinct.min() > 1e-3  # 64 copies of one image: 64 different views
    gray = (views[:, 0] == views[:, 1]) & (views[:, 1] == views[:, 2])
    n_gray = int(gray.flatten(1).all(1).sum())
    assert 2 <= n_gray <= 30  # 0.2 of 64: 12.8 expected


def test_torchvision_v2_crops_a_whole_batch_alike_which_is_why_views_draw_their_own():
    from torchvision.transforms import v2

    torch.manual_seed(0)
    same = torch.randn(1, 3, 32, 32).expand(8, -1, -1, -1).contiguous()
    theirs = v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True)(same)
    assert all(torch.equal(theirs[0], theirs[i]) for i in range(8))  # one crop for the batch
    ours = RandomViews(jitter_strength=0.0, grayscale_prob=0.0)(same)
    assert not any(torch.equal(ours[0], ours[i]) for i in range(1, 8))


def test_crops_lie_inside_the_image_with_their_drawn_area_and_flips_mirror():
    torch.manual_seed(0)
    grids = crop_flip_grids(2000, 32, 32, (0.3, 0.6), (0.75, 4 / 3), 0.5, "cpu")
    assert grids.abs().max() <= 1.0  # sampling points never leave the image
    span_x = (grids[:, 0, -1, 0] - grids[:, 0, 0, 0]) * 32 / 31 / 2  # share of the width
    span_y = (grids[:, -1, 0, 1] - grids[:, 0, 0, 1]) * 32 / 31 / 2
    area = (span_x * span_y).abs()
    assert area.min() >= 0.3 - 1e-4 and area.max() <= 0.6 + 1e-4
    mirrored = (span_x < 0).float().mean()
    assert 0.45 < mirrored < 0.55


def test_identity_views_when_every_random_change_is_off():
    x = torch.randn(4, 1, 32, 32)
    views = RandomViews((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, 0.0, 0.0)(x)
    assert torch.allclose(views, x, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loss(rank: int, world: int, port: int, z: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = len(z) // 2  # this process holds images [rank*n/world, ...), both views of each
        per = n // world
        mine = torch.cat(
            [z[rank * per : (rank + 1) * per], z[n + rank * per : n + (rank + 1) * per]]
        )
        mine = mine.clone().requires_grad_(True)
        partner = torch.arange(2 * per).roll(per)
        loss = nt_xent(mine, partner, 0.2)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)  # DDP averages gradients; the logged loss is averaged likewise
        out[rank] = (float(total) / world, (mine.grad / world).clone())  # DDP's averaging
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_loss_and_gradients_of_one_process_with_the_whole_batch():
    torch.manual_seed(0)
    z = torch.randn(16, 6)  # 8 images: [view 1 of each; view 2 of each]
    whole = z.clone().requires_grad_(True)
    loss = nt_xent(whole, torch.arange(16).roll(8), 0.2)
    loss.backward()
    out = mp.Manager().dict()
    mp.spawn(_rank_loss, args=(2, _free_port(), z, out), nprocs=2)
    for rank in range(2):
        got, grad = out[rank]
        assert got == pytest.approx(float(loss), rel=1e-6)
        rows = list(range(4 * rank, 4 * rank + 4)) + list(range(8 + 4 * rank, 12 + 4 * rank))
        assert torch.allclose(grad, whole.grad[rows], atol=1e-6)


# the same first step on 1 and 2 processes: every image in one global batch (1258 digits), views
# that are the images themselves, a ViT (no batch norm, whose statistics depend on the split)
SAME_STEP = [
    "pretext=simclr",
    "backbone=vit_tiny",
    "backbone.width=24",
    "backbone.depth=1",
    "data.size=16",
    "data.batch_size=1258",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=0",
    "pretext.task.crop_scale=[1.0,1.0]",
    "pretext.task.crop_ratio=[1.0,1.0]",
    "pretext.task.jitter_strength=0",
    "pretext.task.grayscale_prob=0",
    "downstream=knn",
    "monitor.knn=false",
    "logger=none",
]


@pytest.mark.slow
def test_ddp_cpu_gives_the_loss_of_one_process_with_the_whole_batch(tmp_path):
    result = run_cli(tmp_path, "-m", "trainer=cpu,ddp_cpu", *SAME_STEP)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert len(runs) == 2
    single, ddp = runs
    assert single["pretext_steps"] == ddp["pretext_steps"] == 1
    assert ddp["pretext_loss"] == pytest.approx(single["pretext_loss"], rel=1e-5)


@pytest.mark.slow
def test_simclr_on_digits_writes_metrics_and_its_loss_falls(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        tmp_path,
        f"hydra.run.dir={run_dir}",
        "pretext=simclr",
        *TINY,
        "logger=csv",
        "pretext.epochs=3",
        "data.labels_per_class=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = logged(run_dir, "pretrain/train_loss")
    assert len(losses) == 3 and losses[-1] < losses[0]
    (m,) = read_metrics(run_dir)
    assert m["pretext"] == "simclr" and m["score_name"] == "test/acc"
    assert m["score"] > 0.3  # chance: 0.1
    assert (run_dir / "pretext_simclr.png").is_file()


@pytest.mark.slow
def test_a_sweep_over_classic_tasks_and_simclr_lands_in_one_report_table(tmp_path):
    result = run_cli(
        tmp_path,
        "-m",
        "pretext=rotation,jigsaw,inpainting,simclr",
        "downstream=linear_probe",
        *TINY,
        "data.labels_per_class=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    text, found = write_report(sweep)
    assert len(found.runs) == 4 and found.incomplete == []
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| pretext | linear_probe |"
    assert {row.split(" | ")[0].removeprefix("| ") for row in table[1:]} == {  # under |---|
        "rotation",
        "jigsaw",
        "inpainting",
        "simclr",
    }
