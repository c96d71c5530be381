"""The `ser` command group.

Subcommands live in their own modules and are imported only when invoked, so
`ser --help` stays fast and heavy libraries (torch, transformers) load inside
the command that needs them.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os

import click

from ssl_ser import __version__
from ssl_ser.errors import SerError
from ssl_ser.progress import show_on_stderr
from ssl_ser.settings import Logging, options

# command name -> "module:function" under ssl_ser.cli
COMMANDS: dict[str, str] = {
    "corpora": "ssl_ser.cli.prepare:corpora",
    "prepare": "ssl_ser.cli.prepare:prepare",
    "extract": "ssl_ser.cli.extract:extract",
    "cache": "ssl_ser.cli.cache:cache",
    "classify": "ssl_ser.cli.classify:classify",
    "finetune": "ssl_ser.cli.finetune:finetune",
    "export": "ssl_ser.cli.export:export",
    "predict": "ssl_ser.cli.predict:predict",
    "bench-inference": "ssl_ser.cli.bench_inference:bench_inference",
    "report": "ssl_ser.cli.report:report",
    "compare": "ssl_ser.cli.compare:compare",
    "probe": "ssl_ser.cli.pipelines:probe",
    "run": "ssl_ser.cli.pipelines:run",
    "demo": "ssl_ser.cli.pipelines:demo",
}

BAD_INPUT_EXIT = 1
# Operating-system refusals shown as one line (the file and the reason), not a traceback.
OS_REFUSALS = frozenset(
    {
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
    }
)


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All command names, including those not imported yet."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the command called `cmd_name`."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; bad input becomes a one-line error and exit code 1."""
        try:
            return super().invoke(ctx)
        except SerError as error:
            click.echo(f"error: {error}", err=True)
            raise click.exceptions.Exit(BAD_INPUT_EXIT) from error
        except OSError as error:
            if error.errno not in OS_REFUSALS:
                raise
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"error: {where}{error.strerror or error}", err=True)
            raise click.exceptions.Exit(BAD_INPUT_EXIT) from error


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="ser")
@options(Logging)
def cli(verbose: int) -> None:
    """ssl-ser: speech emotion recognition with self-supervised speech models."""
    # Idle OpenMP threads (xgboost, torch, scikit-learn) sleep instead of spinning: spinning
    # threads of parallel cells starve each other on a shared machine (an xgb-fast fit of
    # 500 x 88 took 23.6 s instead of 0.7 s under load). Set before any of them loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    show_on_stderr()


if __name__ == "__main__":  # `python -m ssl_ser.cli.main`: what torchrun and accelerate launch run
    cli(prog_name="ser")
