"""The CompressAI pieces the codec uses, reached without the cost of ``import compressai``.

CompressAI's ``__init__`` imports every subpackage: its point-cloud datasets and transforms pull
in torch_geometric, torchvision and torch._dynamo, its model zoo every architecture, and
``entropy_models`` imports scipy.stats for one helper (``GaussianConditional._standardized_quantile``,
used only when ``update()`` rebuilds the CDF tables, which shipped weights carry). That is about
2.5 s of a codec command's start-up for nothing it runs.

This module is the one place where the codec reaches CompressAI. Before the first import it
registers *lazy packages* in ``sys.modules`` for ``compressai``, ``compressai.models`` and
``compressai.latent_codecs``: module objects with the real package directory as ``__path__``,
whose ``__init__.py`` has not run. Submodules (``compressai.layers``, ``compressai.ans``,
``compressai.models.base`` …) then import normally, from the installed files. A name that is not
a submodule (``compressai.models.Cheng2020Anchor``, ``compressai.zoo``'s needs) runs the real
``__init__.py`` into the same module object on first access, so code that wants all of
CompressAI (training, evaluation, the bench's zoo model) still gets it, with the same classes.
While ``compressai.entropy_models`` is imported, ``scipy`` is a stand-in that imports the real
``scipy.stats`` on first use; the stand-in is removed again, so nothing else sees it.

The codec's decode depends on CompressAI's coder tables, layer definitions and rANS coder, so the
installed version must be the one it was built against: any other raises ``CompressAIVersionError``
with a one-line message instead of decoding with code that may not match the files.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

from .errors import WeightsError

REQUIRED_VERSION = "1.2.8"  # setup.cfg pins the same
# Packages whose __init__ imports far more than the codec uses, and the names the codec's imports
# take from them without their __init__ (compressai.models.base needs LatentCodec).
_LAZY = {"compressai.models": {}, "compressai.latent_codecs": {"LatentCodec": "base"}}


class CompressAIVersionError(WeightsError, ImportError):
    """The installed CompressAI is missing or not the version the codec was built against: a
    set-up problem, reported (exit status 3) like missing weights."""


def _lazy_package(
    name: str, directory: Path, extra: dict | None = None, exports: dict | None = None
) -> types.ModuleType:
    """A package module whose ``__init__.py`` runs on the first access to a name that is
    neither set, nor a submodule, nor in ``exports`` (name -> the submodule defining it)."""
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(extra or {})

    def __getattr__(attr: str):
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(attr)
        if exports and attr in exports:
            return getattr(importlib.import_module(f"{name}.{exports[attr]}"), attr)
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        # Anything else: become the real package (its __init__ defines what it exports).
        del module.__dict__["__getattr__"]
        module.__dict__["_ugicm_lazy"] = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            spec.loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    module._ugicm_lazy = True
    return module


class _DeferredScipyStats(types.ModuleType):
    """Stands in for ``scipy.stats`` in a module that only calls it later, if ever."""

    def __getattr__(self, attr: str):
        if attr.startswith("__") or sys.modules.get("scipy.stats") is self:
            raise AttributeError(attr)  # asked while the stand-in is registered (inspect, pickle)
        return getattr(importlib.import_module("scipy.stats"), attr)


def _root_functions() -> dict:
    """What ``compressai/__init__.py`` defines besides imports: the entropy coder choice, which
    ``compressai.entropy_models`` reads at run time (ugicm only uses rANS)."""
    state = {"coder": "ans"}

    def available_entropy_coders():
        return ["ans"]

    def get_entropy_coder():
        return state["coder"]

    def set_entropy_coder(entropy_coder):
        if entropy_coder not in available_entropy_coders():
            raise ValueError(f'Invalid entropy coder "{entropy_coder}", choose from(ans).')
        state["coder"] = entropy_coder

    return {
        "available_entropy_coders": available_entropy_coders,
        "get_entropy_coder": get_entropy_coder,
        "set_entropy_coder": set_entropy_coder,
    }


def _install() -> None:
    if "compressai" not in sys.modules:
        spec = importlib.util.find_spec("compressai")
        if spec is None or not spec.submodule_search_locations:
            raise CompressAIVersionError(
                f"ugicm needs CompressAI {REQUIRED_VERSION}: pip install compressai=={REQUIRED_VERSION}"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        sys.modules["compressai"] = _lazy_package("compressai", root, _root_functions())
        for name, exports in _LAZY.items():
            if name not in sys.modules:
                sub = root / name.split(".", 1)[1]
                sys.modules[name] = _lazy_package(name, sub, exports=exports)
                setattr(sys.modules["compressai"], name.split(".", 1)[1], sys.modules[name])
    version = importlib.import_module("compressai.version").__version__
    if getattr(sys.modules["compressai"], "_ugicm_lazy", False):
        sys.modules["compressai"].__version__ = version
    if version != REQUIRED_VERSION:
        raise CompressAIVersionError(
            f"ugicm needs CompressAI {REQUIRED_VERSION}, found {version}: its entropy models and "
            f"layers are what .ugc files are coded with (pip install compressai=={REQUIRED_VERSION})"
        )
    if "compressai.entropy_models" not in sys.modules:
        import numpy  # noqa: F401  what entropy_models imports besides scipy, before the stand-in
        import torch  # noqa: F401  goes in, so that only that module's import sees it

        standins = {}
        if "scipy" not in sys.modules:
            stats = _DeferredScipyStats("scipy.stats")
            scipy = types.ModuleType("scipy")
            scipy.stats = stats
            standins = {"scipy": scipy, "scipy.stats": stats}
        sys.modules.update(standins)
        try:
            with warnings.catch_warnings():
                # CompressAI scripts a helper with torch.jit at import time, which newer torch deprecates.
                warnings.simplefilter("ignore", FutureWarning)
                importlib.import_module("compressai.entropy_models")
        finally:
            for name, module in standins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]


_install()

from compressai import ans  # noqa: E402
from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.layers import GDN  # noqa: E402
from compressai.models.base import CompressionModel, get_scale_table  # noqa: E402
from compressai.models.utils import conv, deconv  # noqa: E402
from compressai.ops import quantize_ste  # noqa: E402

__version__ = REQUIRED_VERSION
BufferedRansEncoder, RansDecoder = ans.BufferedRansEncoder, ans.RansDecoder

__all__ = [
    "BufferedRansEncoder",
    "CompressionModel",
    "CompressAIVersionError",
    "EntropyBottleneck",
    "GDN",
    "GaussianConditional",
    "RansDecoder",
    "guard_stream",
    "conv",
    "deconv",
    "get_scale_table",
    "quantize_ste",
]


def guard_stream(stream: bytes, symbols: int) -> bytes:
    """Appends zero bytes so CompressAI's rANS decoder can never read past the buffer.

    That decoder has no bounds checks: on a crafted or damaged stream it keeps reading 32-bit
    words for every remaining symbol, and a bypass-coded run can read up to about 16 bytes per
    byte of stream first. Trailing zeros bound every such read (in zeros the decoder's state
    drains and each symbol takes one word) and change nothing for a valid stream, which the
    decoder never reads beyond.
    """
    return stream + bytes(32 * len(stream) + 8 * symbols + 4096)
