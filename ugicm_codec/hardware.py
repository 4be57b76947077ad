"""What the machine does fast: a torch-free check, shared by training and the slower encoder."""

from __future__ import annotations

from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 autocast is fast there; on an AVX2-only CPU it is emulated and
    made a training step 10x slower here."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_is_fast(device_type: str) -> bool:
    """Whether bf16 autocast speeds up convolutions on a device of this type ("cuda", "cpu")."""
    return device_type == "cuda" or (device_type == "cpu" and cpu_has_native_bf16())
