"""Feedback for long work when progress bars are off: one line per finished step.

With ``--no-progress`` a sweep that runs for minutes would otherwise print nothing
until it ends. :class:`StepLines` logs one line per finished step (a classifier's
group of cells, a corpus's extraction) with the count so far, the rate and an
estimate of the time left, on the ``ssl_ser.progress`` logger. The ``ser`` command
shows that logger's INFO lines on stderr at every verbosity
(:func:`show_on_stderr`); in the Python API they follow the caller's logging setup.
"""

from __future__ import annotations

import logging
import time

import click

LOGGER_NAME = "ssl_ser.progress"
log = logging.getLogger(LOGGER_NAME)


class StepLines:
    """Counts finished units of some work and logs a line per finished step.

    Args:
        what: the work, as the first words of each line (``classify``).
        total: units the work has in all.
        unit: the unit's plural as shown (``cells``, ``audio s``).
        every: at most one line per this many seconds (the last step always shows).
    """

    def __init__(self, what: str, total: float, unit: str, every: float = 0.0):
        self.what = what
        self.total = total
        self.unit = unit
        self.every = every
        self.done = 0.0
        self.started = self.shown = time.perf_counter()

    def step(self, units: float, detail: str = "") -> str | None:
        """Count `units` more finished units; log and return the line, or None if throttled."""
        self.done += units
        now = time.perf_counter()
        finished = self.done >= self.total
        if not finished and now - self.shown < self.every:
            return None
        self.shown = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = 100.0 * self.done / self.total if self.total else 100.0
        line = (
            f"{self.what}: {self.done:.0f}/{self.total:.0f} {self.unit} ({share:.0f}%) "
            f"in {_clock(elapsed)}, {rate:.2f} {self.unit}/s"
        )
        if not finished and rate > 0:
            line += f", about {_clock((self.total - self.done) / rate)} left"
        if detail:
            line += f" - {detail}"
        announce(line)
        return line


def announce(message: str) -> None:
    """Log one progress line (e.g. what a resumed run finds already done)."""
    log.info(message)


def _clock(seconds: float) -> str:
    """``75.4`` -> ``1m15s``; ``8.2`` -> ``8s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _ClickStderr(logging.Handler):
    """Writes records with ``click.echo(err=True)``, which finds the current stderr each time."""

    def emit(self, record: logging.LogRecord) -> None:
        """Echo the record's message alone, without level or logger name."""
        click.echo(record.getMessage(), err=True)


def show_on_stderr() -> None:
    """Show the progress logger's INFO lines on stderr, plainly, whatever the log level.

    Called by the ``ser`` command group; calling it again adds no second handler.
    """
    log.setLevel(logging.INFO)
    log.propagate = False
    if not any(isinstance(handler, _ClickStderr) for handler in log.handlers):
        log.addHandler(_ClickStderr())
