"""`ser bench-inference`: time each part of inference (resampling to classifier) per duration."""

from __future__ import annotations

import click

from ssl_ser.atomic import write_file
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.predict.settings import BENCH_EXTRACTION, BenchSettings
from ssl_ser.settings import Feedback, options


@click.command("bench-inference")
@options(BenchSettings)
@options(ExtractSettings, only=BENCH_EXTRACTION)
@options(Feedback)
def bench_inference(**values) -> None:
    """Time resampling, preprocessing, transfer, forward pass and classifier per audio duration.

    Synthetic audio of each duration at --input-rate goes through each part on
    its own clock (CUDA synchronised before every clock read); the table gives
    median / p95 ms over --repeats runs after --warmup runs and the real-time
    factor (total / audio seconds). A bare model's classifier part is the masked
    pooling of all hidden states (there is no head); a fine-tuned folder's is
    pooling, head and softmax; a probe bundle's is pooling, its layer and classifier.
    A bundle is timed as it was made (with or without --whisper-trim).
    """
    import torch

    from ssl_ser.extract.backbones import library_progress_bars
    from ssl_ser.predict import timing

    bench = BenchSettings.from_cli(values)
    inference = ExtractSettings.from_cli({k: values[k] for k in BENCH_EXTRACTION})
    if bench.threads is not None:
        torch.set_num_threads(bench.threads)
    runs = (bench.input_rate, bench.repeats, bench.warmup)
    timing.check_settings(bench.durations, *runs)
    with library_progress_bars(Feedback.from_cli(values).progress):
        pipeline = timing.load_pipeline(bench.target, inference.device, inference.whisper_trim)
    table = timing.bench(pipeline, bench.durations, *runs)
    write_file(bench.output, lambda p: table.to_csv(p, index=False))
    click.echo(timing.format_table(table))
    click.echo(f"table written to {bench.output}", err=True)
