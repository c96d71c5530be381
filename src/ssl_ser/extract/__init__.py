"""Feature extraction: every hidden layer of an SSL model in one pass, pooled, into the cache.

Python entry point::

    from ssl_ser.extract import ExtractorConfig, extract

    summaries = extract(manifest_df, ExtractorConfig(model="facebook/wav2vec2-base"),
                        "cache", condition="clean", device="auto")

Importing this package is cheap: torch and transformers load on the first use
of :func:`extract` (or of the modules that compute: backbones, pooling, runner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_ser.extract.config import DEFAULT_BATCH_SECONDS, POOLINGS, ExtractorConfig
from ssl_ser.extract.summary import ExtractSummary

if TYPE_CHECKING:
    from ssl_ser.extract.runner import extract

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "POOLINGS",
    "ExtractSummary",
    "ExtractorConfig",
    "extract",
]

_LAZY = ("extract",)


def __getattr__(name: str) -> Any:
    """Load the runner (and with it torch) only when its names are first used."""
    if name in _LAZY:
        from ssl_ser.extract import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
