"""`ser predict`: label new audio files with a saved model."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ssl_ser.errors import ConfigError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.predict.settings import PREDICT_EXTRACTION, PredictSettings
from ssl_ser.settings import Feedback, options

# Exit status when some files could not be labelled (their rows hold the error).
FAILED_FILES_EXIT = 1


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("inputs", nargs=-1, required=True)
@options(PredictSettings, exclude=["workers"])
@options(ExtractSettings, only=PREDICT_EXTRACTION)
@options(PredictSettings, only=["workers"])
@options(Feedback)
def predict(bundle: str, inputs: tuple[str, ...], **values) -> None:
    """Predict the emotion of every audio file in INPUTS with the model saved in BUNDLE.

    BUNDLE is a probe bundle (`ser classify --save-probe`, `ser export`) or a model
    folder from `ser finetune` (OUTPUT/models/<cell id>/).
    INPUTS are audio files, folders (searched recursively) or manifests; audio
    at any sample rate is resampled as in extraction, and files are read as the
    model's training audio was (its channel and condition). One row per file: path,
    duration, predicted emotion, one probability per class, and the error of a
    file that could not be used (the others go on; the exit status is 1 then).
    """
    from ssl_ser import predict as predict_module
    from ssl_ser.extract.backbones import library_progress_bars
    from ssl_ser.predict.predictor import WHOLE_FILE

    settings = PredictSettings.from_cli(values)
    inference = ExtractSettings.from_cli({k: values[k] for k in PREDICT_EXTRACTION})
    progress = Feedback.from_cli(values).progress
    output = writable_output(settings.output) if settings.output else None
    with library_progress_bars(progress):
        predictor = predict_module.load(bundle, inference.device)
    table = predictor.predict(
        list(inputs),
        **settings.fields_of(predictor.predict, batch_seconds=inference.batch_seconds),
        progress=progress,
    )
    files = table[table["window"] == WHOLE_FILE]
    failed = int(files["error"].notna().sum())
    if output is not None:
        write_csv(table, output)
        where = str(output)
    else:
        click.echo(table.to_csv(index=False), nl=False)
        where = "stdout"
    click.echo(
        f"{len(files) - failed} file(s) labelled, {failed} failed; table in {where}", err=True
    )
    if failed:
        sys.exit(FAILED_FILES_EXIT)


def writable_output(output: str | Path) -> Path:
    """The CSV path, its folder created first (before any audio is labelled).

    A missing folder is created, as ``--output`` of the other commands creates
    theirs; a path that cannot be a file is refused now rather than after labelling.

    Raises:
        ConfigError: naming the path and why it cannot be written.
    """
    path = Path(output)
    if path.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a CSV file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"--output {output}: cannot create its folder {path.parent} ({error.strerror})"
        ) from error
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--output {output}: its folder {path.parent} is not writable")
    return path


def write_csv(table: Any, path: Path) -> None:
    """Write the table beside `path` and rename it into place (never half a file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.to_csv(temporary, index=False)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"--output {path}: cannot write it ({error.strerror})") from error
