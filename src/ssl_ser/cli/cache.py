"""`ser cache ls|info|verify`: list, describe and check feature caches.

Each command ends with a one-line summary; `verify` exits with status 1 when it
finds a problem, after listing them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ssl_ser import cache as feature_cache
from ssl_ser.errors import CacheError

# Key fields shown by `ls`, first present wins (the cache itself treats the key as opaque).
MODEL_FIELDS: tuple[str, ...] = ("model", "model_id", "model_name")
CONDITION_FIELDS: tuple[str, ...] = ("condition",)


def human_size(n_bytes: float) -> str:
    """Bytes as a short human-readable size: 1536 -> '1.5 KiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while n_bytes >= 1024 and power < len(units) - 1:
        n_bytes /= 1024
        power += 1
    return f"{n_bytes:.0f} B" if power == 0 else f"{n_bytes:.1f} {units[power]}"


def _first_field(key: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        if name in key:
            return str(key[name])
    return "-"


@click.group()
def cache() -> None:
    """List, describe and check feature caches."""


@cache.command("ls")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def ls(directory: Path) -> None:
    """List the caches under DIRECTORY: path, model, condition, rows complete/total, size."""
    complete = total = size = 0
    paths = feature_cache.list_caches(directory)
    for path in paths:
        shown = path.relative_to(directory)
        try:
            summary = feature_cache.info(path)
        except CacheError as error:
            click.echo(f"{shown}  unreadable: {error}")
            continue
        key = summary["key"]
        click.echo(
            f"{shown}  {_first_field(key, MODEL_FIELDS)}  {_first_field(key, CONDITION_FIELDS)}  "
            f"{summary['rows_complete']}/{summary['rows_total']}  "
            f"{human_size(summary['size_bytes'])}"
        )
        complete += summary["rows_complete"]
        total += summary["rows_total"]
        size += summary["size_bytes"]
    click.echo(
        f"{len(paths)} cache file(s) in {directory}: {complete}/{total} rows complete, "
        f"{human_size(size)}"
    )


@cache.command("info")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Describe cache FILE: key, layers, shape, completeness, failures, size and versions.

    The feature version (in the key) changes only when the stored numbers would;
    the toolkit version is the release that wrote the file, not part of the key.
    """
    summary = feature_cache.info(file)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo("key:")
    for field, value in summary["key"].items():
        click.echo(f"  {field}: {value}")
    layers = summary["layers"]
    click.echo(f"layers: {len(layers)} ({', '.join(layers)})")
    click.echo(f"poolings: {', '.join(summary['poolings'])}")
    click.echo(f"shape: {' x '.join(str(n) for n in summary['shape'])} {summary['storage_dtype']}")
    click.echo(f"manifest digest: {summary['manifest_digest'] or '(not set)'}")
    feature_version = summary["feature_version"]
    click.echo(f"feature version: {'(none)' if feature_version is None else feature_version}")
    click.echo(f"toolkit version: ssl-ser {summary['toolkit_version']} (wrote the file)")
    click.echo(
        f"{file}: {summary['rows_complete']}/{summary['rows_total']} rows complete, "
        f"{summary['rows_failed']} failed, {human_size(summary['size_bytes'])}"
    )


@cache.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(file: Path) -> None:
    """Check cache FILE: structure, unique ids, valid slots, key set, no NaN/inf in complete rows.

    Exits with status 1 when a problem is found.
    """
    problems = feature_cache.verify(file, progress=sys.stderr.isatty())
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        raise click.ClickException(f"{file}: {len(problems)} problem(s) found")
    summary = feature_cache.info(file)
    click.echo(
        f"{file}: OK, {summary['rows_complete']}/{summary['rows_total']} rows complete, "
        f"{len(summary['layers'])} layers x {summary['dim']}, no problems found"
    )
