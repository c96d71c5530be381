"""Library versions saved with a model, and the warning when they differ on load."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

VERSIONED_LIBRARIES: tuple[str, ...] = (
    "ssl_ser",
    "sklearn",
    "xgboost",
    "numpy",
    "torch",
    "transformers",
    "peft",
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a saved model depends on (those importable here)."""
    versions = {}
    for name in VERSIONED_LIBRARIES:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            continue
    return versions


def warn_other_majors(where: object, saved: Mapping[str, str]) -> list[str]:
    """Warn, naming them, about libraries whose major version differs from the saved ones."""
    now = library_versions()
    differ = [
        f"{name} {version} (now {now[name]})"
        for name, version in saved.items()
        if name in now and str(version).split(".")[0] != now[name].split(".")[0]
    ]
    if differ:
        log.warning(
            "%s was saved with other major versions: %s; its predictions may differ",
            where,
            ", ".join(differ),
        )
    return differ
