from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class IngestSettings(RuntimeSettings, kw_only=True, frozen=True):
    max_pixels: int = 40_000_000
    """Larger images are refused before decoding (decompression-bomb guard)."""
    max_side: int = 16_384
    allowed_formats: str = "PNG,JPEG,WEBP,TIFF,BMP,GIF"
    """Any of PNG, JPEG, WEBP, TIFF, BMP, GIF (first frame): what Pillow reads safely here."""
