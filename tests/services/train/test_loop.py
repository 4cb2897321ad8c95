"""The training loop on its own: it learns, it resumes from a checkpoint exactly, it freezes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from maskline.contracts.model_v1 import Architecture, ModelOutput
from maskline.contracts.train_v1 import Hyperparameters
from maskline.models.starter import shapes
from maskline.models.starter.unet import UNet
from maskline.services.train import network
from maskline.services.train.data import IGNORE, Examples, split
from maskline.services.train.loop import Trainer, learning_rate_factor, loss_of

pytestmark = pytest.mark.unit


def _examples(seed: int, n: int, size: int = 32) -> Examples:
    images, masks = shapes.batch(np.random.default_rng(seed), n, size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    return Examples(x, torch.from_numpy(masks.astype(np.uint8)))


def _trainer(hyper: Hyperparameters, module: torch.nn.Module | None = None) -> Trainer:
    torch.manual_seed(0)
    model = module if module is not None else UNet(classes=len(shapes.LABELS), width=4)
    return Trainer(model, hyper, ModelOutput(), len(shapes.LABELS), _examples(1, 24), _examples(2, 8), torch.device("cpu"))


def test_training_lowers_the_loss_and_raises_the_validation_miou() -> None:
    trainer = _trainer(Hyperparameters(steps=60, batch=8, learning_rate=1e-2, validate_every=20, seed=3))
    before = trainer.validate()
    trainer.advance(60)
    assert [p.step for p in trainer.curve] == [20, 40, 60]
    assert trainer.curve[-1].loss < trainer.curve[0].loss
    assert before is not None and trainer.curve[-1].validation_miou is not None
    assert trainer.curve[-1].validation_miou > before


def test_a_run_resumed_from_a_checkpoint_ends_exactly_as_one_that_never_stopped() -> None:
    hyper = Hyperparameters(steps=30, batch=4, validate_every=10, seed=5, schedule="one-cycle", loss="cross-entropy+dice")
    whole = _trainer(hyper)
    whole.advance(30)
    first = _trainer(hyper)
    first.advance(15)
    checkpoint = first.checkpoint("data-1")
    torch.manual_seed(1234)  # another process: its global generator elsewhere
    resumed = _trainer(hyper)
    assert not resumed.restore(checkpoint, "data-2") and resumed.step == 0  # made on other data: not used
    assert resumed.restore(checkpoint, "data-1") and resumed.step == 15 and resumed.resumes == 1
    resumed.advance(30)
    assert resumed.curve == whole.curve
    for (name, a), b in zip(whole.module.state_dict().items(), resumed.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_torchscript_version_fine_tunes_and_frozen_layers_keep_their_values() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(UNet(classes=len(shapes.LABELS), width=4))
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    module = network.from_torchscript(buffer.getvalue())
    frozen = network.freeze(module, ("enc1.",))
    assert frozen == 6  # two convolutions and two batch norms' weights and biases
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _trainer(Hyperparameters(steps=5, batch=4, freeze=("enc1.",)), module)
    trainer.advance(5)
    after = trainer.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("enc1."))  # BN statistics too
    assert not torch.equal(before["head.weight"], after["head.weight"])
    reloaded = torch.jit.load(io.BytesIO(network.torchscript(trainer.module)))
    assert torch.equal(reloaded.state_dict()["head.weight"], after["head.weight"])


def test_a_prefix_that_names_nothing_is_refused() -> None:
    with pytest.raises(Exception, match=r"no parameter name starts with 'encoder\.'"):
        network.freeze(UNet(classes=2, width=4), ("encoder.",))


@pytest.mark.parametrize(
    "entrypoint",
    [
        "maskline.models.starter.train:main",  # a callable, not a network class (it would exit the worker)
        "maskline.models.sam.__main__:export",  # a program: importing it runs it
        "os.path:join",  # outside the allowed packages
        "maskline.models.starter.unet:torch",  # a module, not a class
    ],
)
def test_only_network_classes_of_allowed_packages_are_built(entrypoint: str) -> None:
    with pytest.raises(network.Untrainable):
        network.from_architecture(Architecture(entrypoint=entrypoint), ("maskline.models.",), seed=0)


def test_padding_never_counts_in_the_loss() -> None:
    raw = torch.randn(1, 3, 4, 4)
    target = torch.full((1, 4, 4), IGNORE, dtype=torch.int64)
    target[0, :2] = 1
    changed = raw.clone()
    changed[0, :, 2:] = 100.0  # wild scores where the image is not
    for kind in ("cross-entropy", "dice", "cross-entropy+dice"):
        assert torch.allclose(loss_of(kind, ModelOutput(), raw, target), loss_of(kind, ModelOutput(), changed, target))


def test_schedules_and_the_split() -> None:
    assert learning_rate_factor("cosine", 0, 100) == 1.0 and learning_rate_factor("cosine", 100, 100) < 1e-9
    assert learning_rate_factor("one-cycle", 0, 100) == pytest.approx(0.04)
    assert learning_rate_factor("step", 70, 100) == 0.1 and learning_rate_factor("constant", 99, 100) == 1.0
    trained, held = split(10, 0.2, seed=1)
    assert len(held) == 2 and sorted(trained + held) == list(range(10)) and split(10, 0.2, seed=1) == (trained, held)
    assert split(1, 0.5, seed=0) == ([0], [])  # never every image held out
