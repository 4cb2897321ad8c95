from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class QuantizeSettings(RuntimeSettings, kw_only=True, frozen=True):
    allowed_architectures: tuple[str, ...] = ("maskline.models.",)
    """Packages a model version's architecture may be imported from (imports run code)."""
    report_images: int = 8
    """Calibration images (the last ones) the STEP/CROSS reports and the comparison run on."""
    batch: int = 8
    torch_threads: int = 0
    """0: torch's default."""
