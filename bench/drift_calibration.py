"""How often the drift test flags a version whose inputs did not change, and whether it flags real
photos: the bundled shapes model, in process (TorchScript, softmax), a reference of 40 shapes
images, live windows of 30 new shapes images (6 seeds) and of 30 crops of the bundled photo.

    python -m bench.drift_calibration

Prints, per window, each feature's PSI and whether PSI > 0.25 alone, and the full rule (PSI above
0.25 and above the chance floor of the sample sizes, `shared.operations.quality.noise_floor`),
would flag it (docs/monitoring.md).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import torch
from PIL import Image

from maskline.models import person
from maskline.models.starter import WEIGHTS, shapes
from maskline.shared.images import statistics
from maskline.shared.images.codec import decode_bgr, encode_png, prepare, stitch
from maskline.shared.operations import quality

REFERENCE, WINDOW = 40, 30


def features(model: torch.jit.ScriptModule, png: bytes) -> dict[str, float]:
    prepared = prepare(png, (128, 128))
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(prepared.batch)), 1).numpy()
    bgr = decode_bgr(png)
    confidence = statistics.confidence_of(stitch(prepared, probs))
    return quality.features(confidence, statistics.brightness(bgr), bgr.shape[1], bgr.shape[0])


def photo_crops(count: int) -> list[bytes]:
    """The same crops as tests/e2e/test_quality.py sends."""
    image = np.asarray(Image.open(io.BytesIO((person.FOLDER / "samples" / "astronaut.jpg").read_bytes())).convert("RGB"))
    crops = []
    for i in range(count):
        y, x, step = (i * 17) % 200, (i * 29) % 200, 1 + i % 2
        view = image[y : y + 300, x : x + 300][::step, ::step]
        crops.append(encode_png(np.ascontiguousarray(view[:, ::-1] if i % 3 == 0 else view)))
    return crops


def window(values: list[dict[str, float]]) -> list[quality.Hour]:
    now = datetime.now(UTC)
    return [quality.Outcome(tenant="t", owner="o", model="m", version=1, at=now, values=v).hour() for v in values]


def main() -> None:
    model = torch.jit.load(str(WEIGHTS)).eval()
    rng = np.random.default_rng(2031)
    reference = quality.reference_of(features(model, encode_png(shapes.sample(rng, 128)[0])) for _ in range(REFERENCE))
    windows = {}
    for seed in range(1, 7):
        live = np.random.default_rng(seed)
        windows[f"shapes seed {seed}"] = [features(model, encode_png(shapes.sample(live, 128)[0])) for _ in range(WINDOW)]
    windows["photo crops"] = [features(model, png) for png in photo_crops(WINDOW)]
    windows["shapes seed 6 + 15 photo crops"] = windows["shapes seed 6"] + windows["photo crops"][:15]
    print(f"reference: {REFERENCE} shapes images; windows of {WINDOW} jobs")
    print(f"| window | {' | '.join(quality.FEATURES)} | PSI > {quality.DRIFT_PSI} alone | the rule |")
    print("|---|" + "---|" * (len(quality.FEATURES) + 2))
    for name, values in windows.items():
        d = quality.drift(reference, window(values), 24)
        alone = any(v > quality.DRIFT_PSI for v in d.psi.values())
        print(f"| {name} | {' | '.join(f'{d.psi[f]:.3f}' for f in quality.FEATURES)} | {alone} | {d.flagged} |")


if __name__ == "__main__":
    main()
