"""Per-image distortion metrics on 8-bit RGB arrays (HxWx3 uint8), the way CompressAI reports them:
PSNR over all three channels, MS-SSIM with the standard 5-scale weights at data range 255."""

from __future__ import annotations

import math

import numpy as np

from ..image_io import PSNR_CAP_DB, psnr  # noqa: F401  (the encoder's --target-psnr measures it too)

# pytorch-msssim downsamples four times with an 11-tap window: each side must exceed (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def _check(original: np.ndarray, decoded: np.ndarray) -> None:
    if original.shape != decoded.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {decoded.shape}")
    if original.dtype != np.uint8 or decoded.dtype != np.uint8:
        raise ValueError("metrics take uint8 arrays")


def ms_ssim(original: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM in [0, 1] (pytorch-msssim, data range 255); None for images too small for 5 scales."""
    _check(original, decoded)
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def tensor(a):
        return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]  # a writable copy

    with torch.no_grad():
        return float(_ms_ssim(tensor(original), tensor(decoded), data_range=255, size_average=True))


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM on the -10·log10(1 - MS-SSIM) scale papers plot, where equal steps look equal."""
    if value is None:
        return None
    if value >= 1.0:
        return PSNR_CAP_DB
    return -10 * math.log10(1 - value)
