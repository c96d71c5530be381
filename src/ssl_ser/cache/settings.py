"""Options of the ``ser cache`` subcommands (each takes the few it needs), declared once.

Command-line only: no experiment file describes cache upkeep. Imports no HDF5 library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click

from ssl_ser.settings import Opt, Settings, setting


class CacheSettings(Settings):
    """How ``ser cache info|verify|prune|merge`` describe, repair, trim and merge caches."""

    as_json: bool = setting(False, "Print the description as JSON.", flag="--json")
    repair: bool = setting(
        False,
        "Mark corrupt rows (bad chunk checksum, NaN/inf) not complete, so the next "
        "`ser extract` redoes them; a file without checksums is rebuilt with them.",
    )
    manifests: Annotated[
        tuple[Path, ...],
        Opt(
            "Manifest CSV whose utterances the cache keeps; repeat for several.",
            flag="--manifest",
            multiple=True,
            click_type=click.Path(exists=True, dir_okay=False, path_type=Path),
        ),
    ]
    dry_run: bool = setting(False, "Only list what would be removed.")
    yes: bool = setting(False, "Remove even when that is more than half of the rows.")
    keep_shards: bool = setting(False, "Keep the shard files after merging (default: remove).")
