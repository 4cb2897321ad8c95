"""The training loop: batches drawn from a seeded generator, the loss, the optimiser and the
learning-rate schedule, validation, and a checkpoint that continues a run exactly where it stopped.

Everything random in a run comes from the hyper-parameters' seed (the initial weights, the batches,
the flips; dropout through torch's global generator), and a checkpoint holds every generator's state
with the weights and the optimiser: on the CPU a run resumed from a checkpoint ends with the same
weights and the same curve as one that never stopped (tests/services/train/test_loop.py).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import msgspec
import torch
import torch.nn.functional as F
from torch import nn

from maskline.contracts.model_v1 import ModelOutput
from maskline.contracts.train_v1 import CurvePoint, Hyperparameters
from maskline.services.train.data import IGNORE, Examples
from maskline.services.train.network import scores, train_mode

_EPS = 1e-6


def learning_rate_factor(schedule: str, step: int, steps: int) -> float:
    """The share of the base learning rate at `step` (0-based) of `steps`."""
    progress = step / max(1, steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "one-cycle":  # a tenth warming up from 4%, then cosine down
        warm = 0.1
        if progress < warm:
            return 0.04 + 0.96 * progress / warm
        return 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
    if schedule == "step":
        return 1.0 if progress < 2 / 3 else 0.1
    return 1.0


def _optimiser(hyper: Hyperparameters, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    lr, decay = hyper.learning_rate, hyper.weight_decay
    if hyper.optimiser == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=hyper.momentum, weight_decay=decay)
    if hyper.optimiser == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay)


def loss_of(kind: str, output: ModelOutput, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy and/or soft Dice over the pixels that are part of the image."""
    log_probs = F.log_softmax(raw, 1) if output.kind == "logits" else raw.clamp_min(_EPS).log()
    total = raw.new_zeros(())
    if "cross-entropy" in kind:
        total = total + F.nll_loss(log_probs, target, ignore_index=IGNORE)
    if "dice" in kind:
        valid = (target != IGNORE).unsqueeze(1)
        probs = log_probs.exp() * valid
        onehot = F.one_hot(target.clamp_max(raw.shape[1] - 1), raw.shape[1]).permute(0, 3, 1, 2) * valid
        inter = (probs * onehot).sum((0, 2, 3))
        sizes = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        total = total + 1 - ((2 * inter + _EPS) / (sizes + _EPS)).mean()
    return total


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes present in the truth or the prediction (as evaluations score)."""
    inter = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - inter
    defined = union > 0
    return float((inter[defined] / union[defined]).mean()) if bool(defined.any()) else 0.0


class Trainer:
    """One run's network, optimiser and position; `advance` trains, `checkpoint`/`restore` keep it."""

    def __init__(
        self,
        module: nn.Module,
        hyper: Hyperparameters,
        output: ModelOutput,
        classes: int,
        training: Examples,
        validation: Examples,
        device: torch.device,
    ) -> None:
        self.module, self.hyper, self.output, self.classes, self.device = module.to(device), hyper, output, classes, device
        self.training, self.validation = training.to(device), validation.to(device)
        self.parameters = [p for p in self.module.parameters() if p.requires_grad]
        self.optimiser = _optimiser(hyper, self.parameters)
        self.generator = torch.Generator().manual_seed(hyper.seed)
        torch.manual_seed(hyper.seed)  # dropout and anything else drawing from torch's global generators
        self.step = 0
        self.resumes = 0
        """How many times the run was taken up again from a checkpoint."""
        self.curve: list[CurvePoint] = []
        self._loss_sum, self._loss_count = 0.0, 0

    @property
    def done(self) -> bool:
        return self.step >= self.hyper.steps

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked = torch.randint(0, len(self.training), (self.hyper.batch,), generator=self.generator)
        flips = torch.rand(self.hyper.batch, generator=self.generator) < 0.5
        x, y = self.training.images[picked.to(self.device)], self.training.masks[picked.to(self.device)].long()
        if self.hyper.flip and bool(flips.any()):
            chosen = flips.to(self.device)
            x[chosen], y[chosen] = x[chosen].flip(-1), y[chosen].flip(-1)
        return x, y

    def advance(
        self, until: int, on_point: Callable[[CurvePoint], None] | None = None, stop: Callable[[], bool] | None = None
    ) -> None:
        """Train up to step `until` (at most the run's steps), adding curve points on the way; `stop`
        is asked before each step (a cancel or a deadline is not kept waiting for a checkpoint)."""
        frozen = self.hyper.freeze
        train_mode(self.module, frozen)
        while self.step < min(until, self.hyper.steps) and not (stop is not None and stop()):
            lr = self.hyper.learning_rate * learning_rate_factor(self.hyper.schedule, self.step, self.hyper.steps)
            for group in self.optimiser.param_groups:
                group["lr"] = lr
            x, y = self._batch()
            loss = loss_of(self.hyper.loss, self.output, scores(self.module(x), self.output.name), y)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimiser.step()
            self.step += 1
            self._loss_sum += float(loss.detach())
            self._loss_count += 1
            if self.step % self.hyper.validate_every == 0 or self.step == self.hyper.steps:
                point = CurvePoint(
                    step=self.step,
                    loss=round(self._loss_sum / self._loss_count, 6),
                    learning_rate=round(lr, 9),
                    validation_miou=self.validate(),
                )
                train_mode(self.module, frozen)
                self.curve.append(point)
                self._loss_sum, self._loss_count = 0.0, 0
                if on_point is not None:
                    on_point(point)

    def validate(self) -> float | None:
        """mIoU on the held-out split (None without one)."""
        if not len(self.validation):
            return None
        self.module.eval()
        confusion = torch.zeros(self.classes, self.classes, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            for start in range(0, len(self.validation), 16):
                x = self.validation.images[start : start + 16]
                truth = self.validation.masks[start : start + 16].long()
                predicted = scores(self.module(x), self.output.name).argmax(1)
                valid = truth != IGNORE
                pairs = truth[valid] * self.classes + predicted[valid].clamp_max(self.classes - 1)
                confusion += torch.bincount(pairs, minlength=self.classes**2).reshape(self.classes, self.classes)
        return round(mean_iou(confusion), 6)

    def last_loss(self) -> float:
        """Mean loss of the last tenth of the curve's points' steps (the run's training loss)."""
        tail = self.curve[-max(1, len(self.curve) // 10) :]
        return round(sum(p.loss for p in tail) / len(tail), 6) if tail else 0.0

    def checkpoint(self, dataset_sha256: str) -> bytes:
        state: dict[str, Any] = {
            "dataset_sha256": dataset_sha256,
            "module": self.module.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "step": self.step,
            "resumes": self.resumes,
            "loss_sum": self._loss_sum,
            "loss_count": self._loss_count,
            "curve": msgspec.json.encode(self.curve).decode(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, data: bytes, dataset_sha256: str) -> bool:
        """Continue from a checkpoint; False (and nothing changed) when it was made on other data."""
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if state["dataset_sha256"] != dataset_sha256:
            return False
        self.module.load_state_dict(state["module"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(state["step"])
        self.resumes = int(state["resumes"]) + 1
        self._loss_sum, self._loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.curve = msgspec.json.decode(state["curve"], type=list[CurvePoint])
        return True
