"""Click options that several ``ser`` commands share, defined once so they stay alike."""

from __future__ import annotations

import click

progress_option = click.option("--progress/--no-progress", default=True, show_default=True)
"""``--progress/--no-progress``: show tqdm progress bars (on by default)."""

dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Print the plan (caches, sweeps, cells); run nothing."
)
"""``--dry-run``: print what a pipeline would do and run nothing."""
