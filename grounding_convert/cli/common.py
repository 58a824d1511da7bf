"""What every command shares: the --debug switch and turning known errors into one clear line."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from ..engine.signals import Interrupted
from ..errors import EXIT_FAILED, GroundingConvertError, ReaderCrash


class State:
    debug: bool = False


@contextmanager
def reported_errors() -> Iterator[None]:
    """Known problems → ``error: <file>: <what>`` and their exit code; tracebacks only with --debug."""
    try:
        yield
    except typer.Exit:
        raise
    except GroundingConvertError as exc:
        if State.debug:
            traceback.print_exc()
            if isinstance(exc, ReaderCrash) and exc.traceback_text:
                sys.stderr.write(exc.traceback_text)
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from None
    except Interrupted as exc:  # SIGINT/SIGTERM during a run: workers stopped, committed partitions kept
        typer.secho(exc.message or "interrupted: committed partitions are kept; rerun with --resume", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.secho("interrupted: finished partitions are committed; rerun with --resume", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # never a bare traceback for users
        if State.debug:
            traceback.print_exc()
        typer.secho(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(EXIT_FAILED) from None


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` for the -O/-W escape hatches."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from ..errors import UsageError

            raise UsageError(f"{flag} takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value
    return out
