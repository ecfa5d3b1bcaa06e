"""Nothing inside a training step waits for the GPU. On a GPU, reading a value back to the host
(``.item()``, ``float()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``.numpy()``) or an op whose
output shape depends on the data (boolean indexing, ``nonzero``, ``masked_select``, ``unique``,
``bincount``) stops the host until the GPU has caught up, so it cannot queue the next step.
On a CPU nothing waits, so these tests count such calls instead: from the first callback hook
of each training step to the last, for every module that trains (each pretext task, each
downstream head), with the callbacks every run has. Calls made by ssl_lab's code (or by a library
it calls) count; Lightning's and the optimiser's own do not, nothing here could change them.
"""

import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

import ssl_lab
from ssl_lab.backbones.decoder import upsampling_decoder
from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.backbones.transformer import TextTransformer
from ssl_lab.backbones.vit import VisionTransformer
from ssl_lab.data.augment import BatchAugment
from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.downstream.classifier import ClassifierModule
from ssl_lab.downstream.generative_finetune import MaskedReconstruction
from ssl_lab.downstream.prompt import PromptModule
from ssl_lab.downstream.segmentation import SegmentationModule, fcn_decoder
from ssl_lab.monitor import TokenCounter
from ssl_lab.nonfinite import NonFiniteGuard
from ssl_lab.pretext.clm import CausalLanguageModel
from ssl_lab.pretext.inpainting import Inpainting
from ssl_lab.pretext.jigsaw import JigsawPuzzle
from ssl_lab.pretext.mae import MaskedAutoencoder
from ssl_lab.pretext.mlm import MaskedLanguageModel
from ssl_lab.pretext.module import PretextModule
from ssl_lab.pretext.rotation import RotationPrediction
from ssl_lab.pretext.simclr import SimCLR
from ssl_lab.pretext.supervised import SupervisedClassification

PACKAGE = str(Path(ssl_lab.__file__).parent)
READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"}
SHAPED_BY_DATA = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "bincount",
    "equal",
    "is_nonzero",
}
VOCAB = Vocabulary(size=40, pad_id=0, mask_id=4, special_ids=(0, 1, 2, 3, 4))


def _ours() -> str | None:
    """Where in ssl_lab the current call comes from (the innermost ssl_lab frame), if it does."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class _Reads(TorchFunctionMode):
    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name == "__getitem__" and _boolean_index(args[1:])):
            where = _ours()
            if where is not None:
                self.found.append(f"{name} at {where}")
        return func(*args, **(kwargs or {}))


class _Ops(TorchDispatchMode):
    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SHAPED_BY_DATA or (
            name in ("index", "index_put", "index_put_") and _boolean_index(args[1:2])
        ):
            where = _ours()
            if where is not None:
                self.found.append(f"aten.{name} at {where}")
        return func(*args, **(kwargs or {}))


def _boolean_index(index) -> bool:
    items = index if isinstance(index, list | tuple) else [index]
    return any(
        _boolean_index(i)
        if isinstance(i, list | tuple)
        else getattr(i, "dtype", None) is torch.bool
        for i in items
    )


class _Open(pl.Callback):
    """First callback: starts counting at each training step's first hook."""

    def __init__(self, found: list[str]) -> None:
        self.modes = [_Reads(found), _Ops(found)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for mode in self.modes:
            mode.__enter__()


class _Close(pl.Callback):
    """Last callback: stops counting at each training step's last hook."""

    def __init__(self, opened: _Open) -> None:
        self.opened = opened

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for mode in reversed(self.opened.modes):
            mode.__exit__(None, None, None)


def _syncs(module: pl.LightningModule, batches: list, callbacks: list[pl.Callback] = ()) -> list:
    """What ssl_lab's code read back or shaped by the data in two training steps of ``module``."""
    found: list[str] = []
    opened = _Open(found)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[opened, *callbacks, NonFiniteGuard("stop"), _Close(opened)],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 2
    return found


ADAM = partial(torch.optim.AdamW)


def _images(n: int = 8, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, channels, 16, 16, generator=g), torch.arange(n) % 4


def _pretext(task_type, **task_args) -> PretextModule:
    backbone = SmallCNN(1, (4, 8))
    return PretextModule(backbone, task_type(8, **task_args), 1e-3, ADAM)


@pytest.mark.parametrize(
    "task, args",
    [
        (RotationPrediction, {}),
        (JigsawPuzzle, {"grid": 2, "num_permutations": 6}),
        (Inpainting, {"channels": 1, "mask": "center", "decoder_levels": 2}),
        (Inpainting, {"channels": 1, "mask": "random_blocks", "decoder_levels": 2}),
        (
            Inpainting,
            {"channels": 1, "mask": "irregular", "decoder_levels": 2, "adversarial_weight": 1e-3},
        ),
        (SupervisedClassification, {"num_classes": 4}),
        (SimCLR, {"hidden_dim": 8, "projection_dim": 4}),
    ],
    ids=[
        "rotation",
        "jigsaw",
        "inpainting-center",
        "inpainting-blocks",
        "inpainting-irregular+adv",
        "supervised",
        "simclr",
    ],
)
def test_image_pretext_steps_never_wait_for_the_device(task, args):
    assert _syncs(_pretext(task, **args), [_images(), _images()]) == []


def test_mae_steps_on_a_vit_never_wait_for_the_device():
    vit = VisionTransformer(1, image_size=16, patch_size=4, width=12, depth=1, heads=3)
    task = MaskedAutoencoder(12, 1, image_size=16, patch_size=4, decoder_width=8, decoder_depth=1)
    module = PretextModule(vit, task, 1e-3, ADAM)
    assert _syncs(module, [_images(), _images()]) == []


def _texts() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB.size, (4, 12), generator=g)
    ids[:, 0], ids[:, -1], ids[2:, 8:] = 2, 3, 0  # [CLS] ... [SEP], two rows padded
    return ids, torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize("task", [MaskedLanguageModel, CausalLanguageModel])
def test_text_pretext_steps_never_wait_for_the_device(task):
    backbone = TextTransformer(VOCAB.size, max_length=16, width=16, depth=1, heads=2, causal=True)
    module = PretextModule(backbone, task(16, VOCAB), 1e-3, ADAM)
    found = _syncs(module, [_texts(), _texts()], [TokenCounter(VOCAB.pad_id)])
    assert found == []


def test_transfer_heads_never_wait_for_the_device():
    classifier = ClassifierModule(
        SmallCNN(1, (4, 8)), nn.Linear(8, 4), 4, 1e-3, ADAM, augment=BatchAugment(2, True)
    )
    segmentation = SegmentationModule(
        SmallCNN(1, (4, 8)), fcn_decoder(8, 5, 2, 16), 5, torch.zeros(1), 1e-3, optimizer=ADAM
    )
    reconstruction = MaskedReconstruction(
        SmallCNN(1, (4, 8)), upsampling_decoder(8, 1, 2), 1e-3, ADAM, torch.zeros(1), torch.ones(1)
    )
    prompt = PromptModule(
        TextTransformer(VOCAB.size, max_length=16, width=16, depth=1, heads=2), [5, 6], 1e-3, ADAM
    )
    ids, labels = _texts()
    prompts = (ids, torch.full((4,), 3), labels)
    found = {
        "classifier": _syncs(classifier, [_images(), _images()]),
        "segmentation": _syncs(segmentation, [_images(), _images()]),
        "generative": _syncs(reconstruction, [(_images()[0],), (_images()[0],)]),
        "prompt": _syncs(prompt, [prompts, prompts]),
    }
    assert found == {name: [] for name in found}


def test_the_counter_catches_a_host_read_and_a_boolean_index():
    source = (
        "def training_step(self, batch, batch_idx):\n"
        "    loss = PretextModule.training_step(self, batch, batch_idx)\n"
        "    if loss.item() > 1e9:\n"
        "        return loss\n"
        "    return loss + 0 * batch[0][batch[1] >= 0].sum()\n"
    )
    scope = {"PretextModule": PretextModule}
    exec(compile(source, f"{PACKAGE}/careless.py", "exec"), scope)  # as if ssl_lab's own code
    careless = type("Careless", (PretextModule,), {"training_step": scope["training_step"]})
    found = _syncs(
        careless(SmallCNN(1, (4, 8)), RotationPrediction(8), 1e-3, ADAM), [_images()] * 2
    )
    assert any(f.startswith("item at careless.py:3") for f in found), found
    assert any(f.startswith("__getitem__ at careless.py:5") for f in found), found
