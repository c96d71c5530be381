"""`ser corpora` lists the supported corpora; `ser prepare` turns a corpus folder into a manifest.

With ``--on-error skip`` every audio file under ROOT ends up in exactly one of the
manifest and ``<output stem>.skipped.csv`` (path, reason).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import pandas as pd

from ssl_ser import audio, manifest
from ssl_ser import corpora as registry
from ssl_ser.atomic import write_file
from ssl_ser.audio import DEFAULT_SAMPLE_RATE
from ssl_ser.corpora.settings import PrepareSettings, ReaderSettings
from ssl_ser.errors import ConfigError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.settings import Feedback, flag_of, options

SHOWN_REASONS = 5


@click.command()
def corpora() -> None:
    """List the supported corpora: language, emotions, file count and expected layout."""
    rows = [("name", "language", "files", "emotions", "layout")]
    for name in registry.names():
        corpus = registry.info(name)
        emotions = sorted(set(corpus.emotions.values())) or ["any (mapped to canonical names)"]
        files = str(corpus.expected_files) if corpus.expected_files else "-"
        rows.append((name, corpus.language or "-", files, " ".join(emotions), corpus.layout))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, row[-1]]))


def skipped_path(output: str | Path) -> Path:
    """Where ``--on-error skip`` lists skipped files: ``m.csv`` -> ``m.skipped.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.skipped.csv")


def reader_options(corpus: str, given: ReaderSettings) -> dict[str, object]:
    """The scan keyword arguments given on the command line, refused where not accepted.

    Raises:
        click.UsageError: an option the corpus's reader does not take (exit code 2).
    """
    accepted = registry.reader_options(corpus)
    options = given.given()
    for key in options:
        if key not in accepted:
            takers = [name for name in registry.names() if key in registry.reader_options(name)]
            raise click.UsageError(
                f"option {flag_of(ReaderSettings, key)} does not apply to corpus {corpus!r}; "
                f"only to: {', '.join(takers)}"
            )
    return options


@click.command()
@click.argument("corpus", type=click.Choice(registry.names()))
@click.argument("root", type=click.Path(path_type=Path))
@options(PrepareSettings)
@options(ReaderSettings)
@options(ExtractSettings, only=["telephone_source"])
@options(Feedback)
def prepare(corpus: str, root: Path, **values) -> None:
    """Read corpus CORPUS at ROOT into a manifest (one row per utterance)."""
    try:  # a bad value is a usage error here (exit code 2), as click's own
        settings, reader = PrepareSettings.from_cli(values), ReaderSettings.from_cli(values)
        source = ExtractSettings.from_cli({"telephone_source": values["telephone_source"]})
    except ConfigError as error:
        raise click.UsageError(str(error)) from error
    options = reader_options(corpus, reader)
    progress = Feedback.from_cli(values).progress
    result = registry.scan(corpus, root, on_error=settings.on_error, progress=progress, **options)
    output = settings.output
    manifest.write(result.manifest, output)
    skipped_note = "0 skipped"
    if settings.on_error == "skip":
        report = skipped_path(output)
        write_file(report, lambda p: result.skipped.to_csv(p, index=False))
        _echo_reasons(result.skipped["reason"].tolist())
        skipped_note = f"{len(result.skipped)} skipped -> {report}"
    if settings.write is not None:
        condition = settings.condition or "clean"
        written = audio.render_condition(
            result.manifest,
            condition,
            settings.write,
            sample_rate=DEFAULT_SAMPLE_RATE,
            telephone_source=source.telephone_source,
            progress=progress,
        )
        click.echo(
            f"rendered {len(written)} {condition} file(s) at {DEFAULT_SAMPLE_RATE} Hz "
            f"to {settings.write}"
        )
    click.echo(f"{_summary(result.manifest)} to {output}; {skipped_note}")


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
