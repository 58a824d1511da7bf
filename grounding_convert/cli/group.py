"""Usage errors as one line: ``error: Invalid value for '--limit': -1 (accepted: ...)``, exit 2.

typer draws a boxed panel under the usage text; a refused option should read like every other refusal
of this tool (``error: <what>``, see :func:`~grounding_convert.cli.common.reported_errors`), on one line
a script can grep.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer import Abort, BadParameter
from typer.core import TyperGroup

try:  # newer typer vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, NoArgsIsHelpError


class OneLineErrors(TyperGroup):
    """The app's group: parses and runs as typer does; only the way usage errors are shown differs."""

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError:
            return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
        except ClickException as exc:
            typer.secho(f"error: {one_line(exc)}", fg=typer.colors.RED, err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(exc: ClickException) -> str:
    """The message, and for usage errors other than a bad value the command whose --help lists the options."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if not isinstance(exc, BadParameter) and ctx is not None:
        text += f" (see '{ctx.command_path} --help')"
    return text
