from __future__ import annotations

from typing import Literal

from maskline.shared.config import RuntimeSettings


class TrainSettings(RuntimeSettings, kw_only=True, frozen=True):
    allowed_architectures: tuple[str, ...] = ("maskline.models.",)
    """Packages a run may build a network from (imports run code)."""
    max_images: int = 2000
    """Labelled images a run reads at most."""
    max_pixels: int = 64 * 1024 * 1024
    """Images x input height x width a run may hold in memory (12 bytes a pixel as float32 RGB, one
    as a mask): 64 Mi pixels are about 0.8 GiB. A larger dataset is refused (`too_large`)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when the worker has a GPU, else the CPU."""
    torch_threads: int = 0
    """0: torch's default."""
    mlflow_tracking_uri: str = ""
    """An MLflow tracking server (`http://mlflow:5000`) every finished run is also logged to, under
    the experiment `<tenant>/<experiment or default>`; empty: none (needs the `mlflow` extra)."""
