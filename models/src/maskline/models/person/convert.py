"""Convert MediaPipe's selfie segmentation network into the bundled `person-selfie` model.

    python -m maskline.models.person.convert [--wheel mediapipe-0.10.14-...whl] [--out DIR]

Without `--wheel` the wheel is fetched with `pip download mediapipe==0.10.14 --no-deps` (35 MB;
nothing of it is installed). The `.tflite` inside is checked against its known sha256, rebuilt in
PyTorch (`tflite_graph.py`, the custom transposed convolution included), wrapped to take the
platform's input (1 x 3 x 256 x 256 RGB in [0, 1]) and give two-class scores (background, person:
`softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]`, exactly MediaPipe's probability), and written as
TorchScript and ONNX beside a manifest. Re-running it gives the same files' outputs (the test
`tests/models/test_person.py` converts again and compares).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from maskline.models.person import FOLDER, LABELS, MEDIAPIPE, TFLITE_MEMBER, TFLITE_SHA256
from maskline.models.person.tflite_graph import TFLiteGraph


class PersonSegmenter(torch.nn.Module):
    """NCHW RGB [0, 1] in, (background, person) logits out."""

    def __init__(self, tflite: bytes) -> None:
        super().__init__()
        self.graph = TFLiteGraph(tflite, drop_final_sigmoid=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        person = self.graph(image)
        return torch.cat([torch.zeros_like(person), person], dim=1)


def checked(data: bytes, where: str) -> bytes:
    """The file the bundled model was made from, or a refusal: another file would silently differ."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != TFLITE_SHA256:
        raise SystemExit(f"{where} has sha256 {digest}, expected {TFLITE_SHA256} ({MEDIAPIPE})")
    return data


def tflite_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return checked(archive.read(TFLITE_MEMBER), f"{TFLITE_MEMBER} in {wheel.name}")


def download_wheel(folder: Path) -> Path:
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*pip, "--dest", str(folder), MEDIAPIPE], check=True)
    return next(folder.glob("mediapipe-*.whl"))


def convert(tflite: bytes) -> tuple[bytes, bytes]:
    """TorchScript and ONNX bytes of the wrapped network."""
    model = PersonSegmenter(tflite).eval()
    example = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        traced = torch.jit.trace(model, example)
    script = io.BytesIO()
    torch.jit.save(traced, script)
    onnx = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        onnx,  # type: ignore[arg-type]  # the TorchScript exporter writes to any binary file object
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return script.getvalue(), onnx.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="a downloaded mediapipe wheel (default: pip download it)")
    source.add_argument("--tflite", type=Path, help="the .tflite file itself (from an installed mediapipe)")
    parser.add_argument("--out", type=Path, default=FOLDER / "weights")
    args = parser.parse_args()
    if args.tflite:
        tflite = checked(args.tflite.read_bytes(), str(args.tflite))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(Path(tmp))
            tflite = tflite_from_wheel(wheel)
    script, onnx = convert(tflite)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.pt").write_bytes(script)
    (args.out / "model.onnx").write_bytes(onnx)
    manifest = {
        "name": "person-selfie",
        "labels": list(LABELS),
        "input_size": [256, 256],
        "source": {
            "package": MEDIAPIPE,
            "file": TFLITE_MEMBER,
            "sha256": TFLITE_SHA256,
            "license": "Apache-2.0 (see NOTICE)",
        },
        "preprocessing": "stretch to 256x256, RGB scaled to [0, 1] (MediaPipe's own: keep_aspect_ratio false)",
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in (("model.pt", script), ("model.onnx", onnx))},
        "command": "python -m maskline.models.person.convert",
        "torch": torch.__version__,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}/model.pt ({len(script)} bytes) and model.onnx ({len(onnx)} bytes)")


if __name__ == "__main__":
    main()
