"""Reproduce the model-merging study on scikit-learn's digits (offline), with our merge methods.

    python -m bench.federated_study [--rounds 5] [--epochs 3] > docs/federated-study.md

Two sites; a V split (every site has every class, different samples) and an H split (site A has
digits 0-4, site B 5-9), each from a shared initialisation and from independent ones (the
source's set-up: each environment's network from its own random start). Each round both sites
train the global model locally (the reference site
client's job), the server merges their weights with the method, and the merged model is evaluated
on a held-out test set. The merge is `maskline.services.weights.methods.merge_tensor`, the
same code the merge service runs. Rounds run in-process here (they are fast); the same protocol
over NATS is exercised by tests/e2e/test_federation.py.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from maskline.models.digits import DigitsClassifier as SmallCNN
from maskline.services.weights.methods import MergeOptions, merge_integer, merge_tensor


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    model = copy.deepcopy(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def merge(models: list[nn.Module], method: str, samples: list[int], base: nn.Module) -> nn.Module:
    states = [m.state_dict() for m in models]
    base_state = base.state_dict()
    merged = {}
    for key, first in states[0].items():
        tensors = [s[key] for s in states]
        if first.is_floating_point():
            options = MergeOptions(weights=tuple(float(n) for n in samples), density=0.5)
            merged[key] = merge_tensor(method, tensors, options, base_state[key])  # type: ignore[arg-type]
        else:
            merged[key] = merge_integer(key, tensors)
    out = copy.deepcopy(base)
    out.load_state_dict(merged)
    return out


def reestimate_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 64):
            model(x[i : i + 64])
    return model.eval()


#: The source's numbers (Fashion-MNIST, two environments, each network from its own random
#: initialisation): after the first merge and after the last round, per split and method.
SOURCE: dict[str, dict[str, tuple[float, float | None]]] = {
    "V": {"avg": (76.1, None), "max": (18.3, None), "absmax": (71.1, None)},
    "H": {"avg": (47.3, 78.7), "max": (11.5, 71.5), "absmax": (47.1, 70.7)},
}
METHODS = ("avg", "max", "absmax", "weighted", "median", "ties", "avg+bn")


def site_inits(seed: int, independent: bool) -> list[nn.Module]:
    """Each site's starting network: one shared initialisation, or one per site (the source's set-up)."""
    if not independent:
        torch.manual_seed(seed)
        shared = SmallCNN().eval()
        return [shared, shared]
    inits: list[nn.Module] = []
    for site in range(2):
        torch.manual_seed(seed * 1000 + 17 + site)
        inits.append(SmallCNN().eval())
    return inits


def run_rounds(
    method: str,
    inits: list[nn.Module],
    sites: list[tuple[torch.Tensor, torch.Tensor]],
    rounds: int,
    epochs: int,
    calibration: torch.Tensor,
) -> list[nn.Module]:
    """Round 1 trains each site from its own start; later rounds from the merged global model."""
    starts, merged_models = list(inits), []
    for r in range(rounds):
        trained = [train(starts[i], x, y, epochs, seed=100 * r + i) for i, (x, y) in enumerate(sites)]
        merged = merge(trained, method.removesuffix("+bn"), [len(y) for _, y in sites], starts[0])
        if method.endswith("+bn"):
            merged = reestimate_bn(merged, calibration)
        merged_models.append(merged)
        starts = [merged, merged]
    return merged_models


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)  # fixed, with deterministic algorithms: a rerun gives the same numbers
    torch.use_deterministic_algorithms(True)
    return args


@dataclass(frozen=True)
class Digits:
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_te: torch.Tensor
    y_te: torch.Tensor
    perm: NDArray[np.int64]
    """A permutation of the training images (the V split's halves)."""
    splits: dict[str, list[NDArray[np.int64]]]
    """V: each site a random half; H: site A digits 0-4, site B 5-9 (training image indices)."""


def digits_data(seed: int) -> Digits:
    digits = load_digits()
    x_all = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y_all = torch.tensor(digits.target)
    idx_train, idx_test = train_test_split(np.arange(len(y_all)), test_size=0.3, random_state=seed, stratify=digits.target)
    x_tr, y_tr = x_all[idx_train], y_all[idx_train]
    perm = np.random.default_rng(seed).permutation(len(y_tr))
    splits = {
        "V": [perm[: len(perm) // 2], perm[len(perm) // 2 :]],
        "H": [np.where(y_tr.numpy() < 5)[0], np.where(y_tr.numpy() >= 5)[0]],
    }
    return Digits(x_tr, y_tr, x_all[idx_test], y_all[idx_test], perm, splits)


def main() -> None:
    args = arguments()
    d = digits_data(args.seed)
    x_tr, y_tr, x_te, y_te, perm, splits = d.x_tr, d.y_tr, d.x_te, d.y_te, d.perm, d.splits
    own_test = {  # the test images of each site's own classes (the source's per-site metric)
        "V": [np.arange(len(y_te)), np.arange(len(y_te))],
        "H": [np.where(y_te.numpy() < 5)[0], np.where(y_te.numpy() >= 5)[0]],
    }
    calibration = x_tr[perm[:100]]  # a small server-side set, for BN re-estimation only
    central = train(site_inits(args.seed, False)[0], x_tr, y_tr, args.epochs * args.rounds, seed=1)
    started = time.perf_counter()
    print("# Merging models trained in separate environments: the study, reproduced\n")
    print(f"Command: `python -m bench.federated_study --rounds {args.rounds} --epochs {args.epochs} --seed {args.seed}`  ")
    print(
        f"Data: scikit-learn digits (8x8, 10 classes), {len(y_tr)} train / {len(y_te)} test (stratified). "
        f"Two sites, {args.epochs} local epochs per round, {args.rounds} rounds; every seed fixed "
        "(`torch.use_deterministic_algorithms`), so a rerun prints the same tables.  "
    )
    central_acc = accuracy(central, x_te, y_te)
    print(f"Centrally trained on all data ({args.epochs * args.rounds} epochs): **{central_acc:.1%}** test accuracy.\n")
    firsts: dict[tuple[str, str], tuple[float, float]] = {}
    for independent in (False, True):
        condition = "independent initialisation (the source's set-up)" if independent else "a shared initialisation"
        for split, parts in splits.items():
            sites = [(x_tr[p], y_tr[p]) for p in parts]
            inits = site_inits(args.seed, independent)
            local = [train(inits[i], x, y, args.epochs * args.rounds, seed=10 + i) for i, (x, y) in enumerate(sites)]
            own = [accuracy(local[i], x_te[own_test[split][i]], y_te[own_test[split][i]]) for i in range(2)]
            print(f"## {split} split, {condition}\n")
            print(
                f"Local models alone ({args.epochs * args.rounds} epochs on their own data): "
                f"site A {accuracy(local[0], x_te, y_te):.1%}, site B {accuracy(local[1], x_te, y_te):.1%} on all the test set; "
                f"on their own classes: A {own[0]:.1%}, B {own[1]:.1%}.\n"
            )
            print("| method | " + " | ".join(f"round {r}" for r in range(1, args.rounds + 1)) + " |")
            print("|---|" + "---|" * args.rounds)
            for method in METHODS:
                models = run_rounds(method, inits, sites, args.rounds, args.epochs, calibration)
                row = [accuracy(m, x_te, y_te) for m in models]
                if independent:
                    firsts[(split, method)] = (row[0], row[-1])
                print(f"| {method} | " + " | ".join(f"{a:.1%}" for a in row) + " |")
            print()
    print("## Against the source, point by point (independent initialisation)\n")
    print("| split | method | source: first merge | ours: first merge | source: last round | ours: last round |")
    print("|---|---|---|---|---|---|")
    for split, methods in SOURCE.items():
        for method, (first, last) in methods.items():
            ours_first, ours_last = firsts[(split, method)]
            source_last = f"{last}%" if last is not None else "—"
            print(f"| {split} | {method} | {first}% | {ours_first:.1%} | {source_last} | {ours_last:.1%} |")
    print()
    print(
        f"(ran in {time.perf_counter() - started:.0f} s on the 2-core CI machine; `median` of two models equals `avg`; "
        "`ties` uses the previous global model as base, density 0.5; `avg+bn` re-estimates BatchNorm statistics "
        "on 100 server-side training images after each merge.)"
    )


if __name__ == "__main__":
    main()
