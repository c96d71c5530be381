"""`ser cache ls|info|verify|prune|merge`: list, describe, check, repair, trim and merge caches.

Each command ends with a one-line summary. `verify` (unless `--repair` fixed every
problem) and `merge` (when a cache cannot be merged, after merging the others) exit
with status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ssl_ser import cache as feature_cache
from ssl_ser.cache.settings import CacheSettings
from ssl_ser.cache.writer import open_existing, rows_to_prune
from ssl_ser.errors import CacheError
from ssl_ser.settings import Feedback, options

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
    return next((str(key[name]) for name in names if name in key), "-")


@click.group()
def cache() -> None:
    """List, describe, check and merge feature caches."""


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
@options(CacheSettings, only=["as_json"])
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
    checksums = "absent (built by an older ssl-ser)"
    if summary["checksums"]:
        checksums = "per chunk (Fletcher-32)"
    click.echo(f"checksums: {checksums}")
    feature_version = summary["feature_version"]
    click.echo(f"feature version: {'(none)' if feature_version is None else feature_version}")
    click.echo(f"toolkit version: ssl-ser {summary['toolkit_version']} (wrote the file)")
    click.echo(
        f"{file}: {summary['rows_complete']}/{summary['rows_total']} rows complete, "
        f"{summary['rows_failed']} failed, {human_size(summary['size_bytes'])}"
    )


@cache.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options(CacheSettings, only=["repair"])
def verify(file: Path, repair: bool) -> None:
    """Check cache FILE: structure, ids, slots, key, and every chunk of complete rows.

    Every chunk holding complete rows is read: a chunk failing its checksum, or
    NaN/inf, makes a row corrupt (one line per row). Exits with status 1 when a
    problem is found and not repaired.
    """
    progress = sys.stderr.isatty()
    problems = feature_cache.verify(file, progress=progress)
    for problem in problems:
        click.echo(f"problem: {problem}")
    notes = feature_cache.notes(file) if not problems or repair else []
    if repair and (problems or notes):
        problems = _repair(file, problems, progress)
        notes = feature_cache.notes(file)
    for note in notes:
        click.echo(f"note: {note}")
    if problems:
        raise CacheError(
            f"{file}: {len(problems)} problem(s) found; `ser cache verify --repair` sends the "
            "damaged rows back to extraction"
        )
    summary = feature_cache.info(file)
    click.echo(
        f"{file}: OK, {summary['rows_complete']}/{summary['rows_total']} rows complete, "
        f"{len(summary['layers'])} layers x {summary['dim']}, no problems found"
    )


def _repair(file: Path, problems: list[str], progress: bool) -> list[str]:
    """Un-mark corrupt rows (and add checksums); the problems left that repair cannot fix."""
    with open_existing(file, progress=progress) as writer:
        redo = writer.repair(progress=progress, add_checksums=True)
    if redo:
        click.echo(
            f"repaired: {len(redo)} corrupt row(s) marked not complete; `ser extract` "
            "extracts them again"
        )
    left = feature_cache.verify(file, progress=progress)
    for problem in left:
        click.echo(f"problem left: {problem}")
    return left


@cache.command("prune")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options(CacheSettings, only=["manifests", "dry_run", "yes"])
def prune(file: Path, manifests: tuple[Path, ...], dry_run: bool, yes: bool) -> None:
    """Drop the rows of cache FILE that no --manifest lists (files removed from a corpus).

    The file is rebuilt beside the old one with the kept rows and renamed over it,
    under the writer lock; each removed id is printed. Refused when the manifests
    share no id with the cache, and when more than half of the rows would go
    unless --yes.
    """
    import pandas as pd

    from ssl_ser import manifest

    keep = set(pd.concat([manifest.read(path)["utt_id"] for path in manifests]).astype(str))
    if dry_run:
        with feature_cache.open(file) as reader:
            total = len(reader.all_ids)
            dropped = rows_to_prune(file, reader.all_ids, keep, yes=True)
    else:
        with open_existing(file) as writer:
            total = len(writer.ids)
            rows_to_prune(file, writer.ids, keep, yes)
            dropped = writer.prune(keep)
    verb = "would remove" if dry_run else "removed"
    for utt_id in dropped:
        click.echo(f"{verb}: {utt_id}")
    click.echo(f"{file}: {verb} {len(dropped)} of {total} row(s), {total - len(dropped)} kept")
    if dry_run and 2 * len(dropped) > total:
        click.echo("that is more than half of the rows: the real run needs --yes")


@cache.command("merge")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@options(CacheSettings, only=["keep_shards"])
@options(Feedback)
def merge(directory: Path, keep_shards: bool, progress: bool) -> None:
    """Merge the shard files of `ser extract --shard K/N` under DIRECTORY into the caches.

    Every shard 1..N must be there and finished, with one key and one manifest;
    each utterance must be in exactly one shard. The merged file is the one a
    single `ser extract` would write. A cache already merged is recognised and
    left as it is; refusals name the cache, the shards and the utterances.
    """
    from ssl_ser.cache import shards

    summaries, errors = shards.merge_all(directory, keep=keep_shards, progress=progress)
    for summary in summaries:
        click.echo(summary.line())
    for error in errors:
        click.echo(f"cannot merge: {error}")
    merged = sum(not s.already_merged for s in summaries)
    line = (
        f"{directory}: {merged} cache file(s) merged, "
        f"{len(summaries) - merged} already merged, {len(errors)} refused"
    )
    if errors:
        raise CacheError(line)
    if not summaries:
        line = f"{directory}: no shard files to merge"
    click.echo(line)
