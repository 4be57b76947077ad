"""ugicm: a learned image codec whose one bitstream decodes for people or for machine analytics.

The package root stays light: ``Codec`` (which needs torch) is imported on first use.
"""

__version__ = "0.1.0"
__all__ = ["Codec", "__version__"]


def __getattr__(name):
    if name == "Codec":
        from .codec import Codec

        return Codec
    raise AttributeError(name)
