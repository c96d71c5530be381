"""`ser bench-inference`: time each part of inference (resampling to classifier) per duration."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.atomic import write_file
from ssl_ser.cli.options import progress_option
from ssl_ser.errors import ConfigError

DEFAULT_DURATIONS = "1,5,10,20"
DEFAULT_OUTPUT = "bench_inference.csv"


def parse_durations(value: str) -> tuple[float, ...]:
    """``1,5,10,20`` -> seconds.

    Raises:
        ConfigError: a part that is not a number (the check for positive
            seconds is :func:`ssl_ser.predict.timing.check_settings`).
    """
    try:
        return tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError as error:
        raise ConfigError(
            f"durations {value!r} must be comma-separated seconds, e.g. 1,5,10"
        ) from error


@click.command("bench-inference")
@click.option(
    "--model",
    "target",
    required=True,
    help="A model id or folder, a probe bundle, or a fine-tuned model folder from `ser finetune`.",
)
@click.option("--durations", default=DEFAULT_DURATIONS, show_default=True, help="Audio seconds.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--repeats", type=int, default=10, show_default=True, help="Timed runs per duration.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed runs first.")
@click.option(
    "--input-rate",
    type=int,
    default=8000,
    show_default=True,
    help="Sample rate of the synthetic input audio (resampled to the model's rate).",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads of torch (default: torch's own, one per core).",
)
@click.option(
    "--whisper-trim",
    is_flag=True,
    help="Whisper: time the log-mel frames of the audio only, not the padded 30 s window, as "
    "extraction and finetune run it with --whisper-trim (a bundle is timed as it was made).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="CSV to write.",
)
@progress_option
def bench_inference(target: str, **options) -> None:
    """Time resampling, preprocessing, transfer, forward pass and classifier per audio duration.

    Synthetic audio of each duration at --input-rate goes through each part on
    its own clock (CUDA synchronised before every clock read); the table gives
    median / p95 ms over --repeats runs after --warmup runs and the real-time
    factor (total / audio seconds). A bare model's classifier part is the masked
    pooling of all hidden states (there is no head); a fine-tuned folder's is
    pooling, head and softmax; a probe bundle's is pooling, its layer and classifier.
    """
    import torch

    from ssl_ser.extract.backbones import library_progress_bars
    from ssl_ser.predict import timing

    durations = parse_durations(options["durations"])
    if options["threads"] is not None:
        if options["threads"] < 1:
            raise ConfigError(f"threads {options['threads']!r} must be at least 1")
        torch.set_num_threads(options["threads"])
    timing.check_settings(durations, options["input_rate"], options["repeats"], options["warmup"])
    with library_progress_bars(options["progress"]):
        pipeline = timing.load_pipeline(target, options["device"], options["whisper_trim"])
    table = timing.bench(
        pipeline, durations, options["input_rate"], options["repeats"], options["warmup"]
    )
    output: Path = options["output"]
    write_file(output, lambda p: table.to_csv(p, index=False))
    click.echo(timing.format_table(table))
    click.echo(f"table written to {output}", err=True)
