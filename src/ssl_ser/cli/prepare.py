"""`ser corpora` lists the supported corpora; `ser prepare` turns a corpus folder into a manifest.

`ser prepare CORPUS ROOT --output manifest.csv` scans ROOT with the corpus's reader
and writes the manifest (CSV or parquet, by suffix). With ``--on-error skip`` bad
files do not stop the run: they go to ``<output stem>.skipped.csv`` (path, reason)
beside the manifest, so every audio file under ROOT ends up in exactly one of the
two. ``--write DIR`` also renders every utterance under ``--condition`` to DIR as
16 kHz WAV, for listening.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import pandas as pd

from ssl_ser import audio, manifest
from ssl_ser import corpora as registry
from ssl_ser.atomic import write_file
from ssl_ser.audio import CONDITIONS, DEFAULT_SAMPLE_RATE, TELEPHONE_SOURCES
from ssl_ser.cli.options import progress_option
from ssl_ser.corpora._base import ON_ERROR_CHOICES
from ssl_ser.manifest import MANIFEST_SUFFIXES

# Reader options of the generic corpora: scan keyword -> command-line flag.
READER_FLAGS: dict[str, str] = {
    "name": "--name",
    "mapping": "--map",
    "speaker_pattern": "--speaker-pattern",
    "language": "--language",
}
SHOWN_REASONS = 5


@click.command()
def corpora() -> None:
    """List the supported corpora: language, emotions, file count and expected layout."""
    rows = [("name", "language", "files", "emotions", "layout")]
    for name in registry.names():
        try:
            corpus = registry.info(name)
        except ImportError as error:
            rows.append((name, "?", "?", "?", f"(reader unavailable: {error})"))
            continue
        emotions = sorted(set(corpus.emotions.values())) or ["any (mapped to canonical names)"]
        files = str(corpus.expected_files) if corpus.expected_files else "-"
        rows.append((name, corpus.language or "-", files, " ".join(emotions), corpus.layout))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, row[-1]]))


def _parse_mapping(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """Turn repeated ``RAW=EMOTION`` options into a dict (the reader checks the emotions)."""
    mapping: dict[str, str] = {}
    for value in values:
        raw, sep, emotion = value.partition("=")
        if not sep or not raw.strip() or not emotion.strip():
            raise click.BadParameter(f"{value!r} is not RAW=EMOTION", ctx, param)
        mapping[raw.strip()] = emotion.strip()
    return mapping


def _check_output(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in MANIFEST_SUFFIXES:
        raise click.BadParameter(
            f"{str(value)!r} has suffix {value.suffix!r}; expected one of "
            f"{', '.join(MANIFEST_SUFFIXES)}",
            ctx,
            param,
        )
    return value


def skipped_path(output: str | Path) -> Path:
    """Where ``--on-error skip`` lists skipped files: ``m.csv`` -> ``m.skipped.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.skipped.csv")


def reader_options(corpus: str, given: dict[str, object]) -> dict[str, object]:
    """The scan keyword arguments given on the command line, refused where not accepted.

    Raises:
        click.UsageError: an option the corpus's reader does not take (exit code 2).
    """
    accepted = registry.reader_options(corpus)
    options = {key: value for key, value in given.items() if value not in (None, {}, "")}
    for key in options:
        if key not in accepted:
            takers = [name for name in registry.names() if key in registry.reader_options(name)]
            raise click.UsageError(
                f"option {READER_FLAGS[key]} does not apply to corpus {corpus!r}; "
                f"only to: {', '.join(takers)}"
            )
    return options


@click.command()
@click.argument("corpus", type=click.Choice(registry.names()))
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_check_output,
    help="Manifest to write: .csv or .parquet.",
)
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR_CHOICES),
    default="raise",
    show_default=True,
    help="raise: stop at the first bad file; skip: list bad files in <output stem>.skipped.csv.",
)
@click.option("--name", "corpus_name", help="Corpus name for ids (folder and csv readers).")
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="RAW=EMOTION",
    callback=_parse_mapping,
    help="Map a raw emotion name to a canonical one; repeatable (folder and csv readers).",
)
@click.option(
    "--speaker-pattern",
    help="Regex with a named group 'speaker' applied to file names (folder reader).",
)
@click.option("--language", help="ISO 639-3 language code (folder reader).")
@click.option(
    "--condition",
    type=click.Choice(CONDITIONS),
    help="Condition to render with --write [default: clean].",
)
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Render every utterance under --condition to this folder as 16 kHz WAV.",
)
@click.option(
    "--telephone-source",
    type=click.Choice(TELEPHONE_SOURCES),
    default="derived",
    show_default=True,
    help="derived: apply the telephone chain; folder: use the corpus's wav_telephone copies.",
)
@progress_option
def prepare(
    corpus: str,
    root: Path,
    output: Path,
    on_error: str,
    corpus_name: str | None,
    mapping: dict[str, str],
    speaker_pattern: str | None,
    language: str | None,
    condition: str | None,
    write_dir: Path | None,
    telephone_source: str,
    progress: bool,
) -> None:
    """Read corpus CORPUS at ROOT into a manifest (one row per utterance)."""
    options = reader_options(
        corpus,
        {
            "name": corpus_name,
            "mapping": mapping,
            "speaker_pattern": speaker_pattern,
            "language": language,
        },
    )
    if condition is not None and write_dir is None:
        raise click.UsageError("--condition selects what --write renders; give --write DIR too")
    result = registry.scan(corpus, root, on_error=on_error, progress=progress, **options)
    manifest.write(result.manifest, output)
    skipped_note = "0 skipped"
    if on_error == "skip":
        report = skipped_path(output)
        write_file(report, lambda p: result.skipped.to_csv(p, index=False))
        _echo_reasons(result.skipped["reason"].tolist())
        skipped_note = f"{len(result.skipped)} skipped -> {report}"
    if write_dir is not None:
        _render(result.manifest, condition or "clean", write_dir, telephone_source, progress)
    click.echo(f"{_summary(result.manifest)} to {output}; {skipped_note}")


def _render(
    table: pd.DataFrame, condition: str, write_dir: Path, telephone_source: str, progress: bool
) -> None:
    written = audio.render_condition(
        table,
        condition,
        write_dir,
        sample_rate=DEFAULT_SAMPLE_RATE,
        telephone_source=telephone_source,
        progress=progress,
    )
    click.echo(
        f"rendered {len(written)} {condition} file(s) at {DEFAULT_SAMPLE_RATE} Hz to {write_dir}"
    )


def _echo_reasons(reasons: list[str]) -> None:
    """Print how many files were skipped for each kind of reason, commonest first."""
    kinds = Counter(reason.split(";")[0].split(" (")[0] for reason in reasons)
    for kind, count in kinds.most_common(SHOWN_REASONS):
        click.echo(f"skipped {count} file(s): {kind}")
    if len(kinds) > SHOWN_REASONS:
        click.echo(f"... and {len(kinds) - SHOWN_REASONS} more kind(s) of problem")


def _summary(table: pd.DataFrame) -> str:
    """'wrote N utterances (H.H h, S speakers, E emotions)' for a manifest."""
    speakers = table["speaker"][table["speaker"] != ""].nunique()
    hours = table["duration"].sum() / 3600
    return (
        f"wrote {len(table)} utterances ({hours:.1f} h, {speakers} speakers, "
        f"{table['emotion'].nunique()} emotions)"
    )
