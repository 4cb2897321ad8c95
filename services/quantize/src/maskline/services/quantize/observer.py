"""A torch.ao observer whose range comes from our calibrators (or from a stored recipe)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.ao.quantization.observer import ObserverBase

from maskline.services.quantize import calibrators as cal

SAMPLES_PER_BATCH = 65_536
MAX_SAMPLES = 1 << 20


class CalibrationObserver(ObserverBase):
    """Records exact extremes plus a bounded random sample of activations; `calculate_qparams`
    asks the chosen calibrator for the range. `fixed` (scale, zero point) skips calibration:
    that is how a version is rebuilt, bit for bit, from its recipe."""

    def __init__(
        self,
        method: cal.Method = "minmax",
        percentile: float = 99.99,
        dtype: torch.dtype = torch.quint8,
        quant_min: int = 0,
        quant_max: int = 255,
        **_: Any,
    ) -> None:
        super().__init__(dtype=dtype)
        self.qscheme = torch.per_tensor_affine
        self.method: cal.Method = method
        self.percentile = percentile
        self.quant_min, self.quant_max = quant_min, quant_max
        self.fixed: tuple[float, int] | None = None
        self.lo, self.hi = float("inf"), float("-inf")
        self._samples: list[NDArray[np.float32]] = []
        self._count = 0
        self._rng = np.random.default_rng(0)  # same data → same sample → same version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed is None and x.numel():
            flat = x.detach().float().reshape(-1)
            self.lo = min(self.lo, float(flat.min()))
            self.hi = max(self.hi, float(flat.max()))
            if self._count < MAX_SAMPLES:
                values = flat.numpy()
                if values.size > SAMPLES_PER_BATCH:
                    values = self._rng.choice(values, SAMPLES_PER_BATCH, replace=False)
                self._samples.append(np.array(values, dtype=np.float32))
                self._count += values.size
        return x

    def observed(self) -> cal.Observed:
        samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.float32)
        return cal.Observed(lo=self.lo, hi=self.hi, samples=samples)

    def chosen(self) -> tuple[float, int]:
        if self.fixed is not None:
            return self.fixed
        if self.lo > self.hi:
            raise ValueError("observer saw no data: the calibration set never reached this layer")
        r = cal.choose(self.method, self.observed(), self.percentile)
        return cal.qparams(r, self.quant_min, self.quant_max, power_of_two=self.method == "log2")

    @torch.jit.export
    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        scale, zero_point = self.chosen()
        return torch.tensor([scale], dtype=torch.float32), torch.tensor([zero_point], dtype=torch.int32)
