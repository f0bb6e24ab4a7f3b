"""Entry point: the command group, the default ``compress`` command, and error handling.

``albsnn-compress model.pt --budget 0.2`` is ``albsnn-compress compress model.pt
--budget 0.2``: a first argument that is not a command name runs ``compress``.
Every user error (an :class:`AlbsnnError` or a click usage error) is printed as
one line on stderr with exit status 2, never a traceback; this is the one place
that mapping happens. A :class:`~albsnn_compress.search.budget.BudgetWarning` (a budget
that is allowed but probably a mistake) is one ``warning:`` line on stderr too.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import click

from albsnn_compress.errors import AlbsnnError
from albsnn_compress.files.safe_text import visible
from albsnn_compress.search.budget import BudgetWarning
from albsnn_compress.versions import __version__

__all__ = ["cli", "main"]

DEFAULT_COMMAND = "compress"


class _DefaultCommandGroup(click.Group):
    """A group that treats an unknown first word as an argument of ``compress``,
    and turns every user error into one line on stderr with exit status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-") and DEFAULT_COMMAND in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def main(  # click's main returns Any; ours always exits
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        try:
            with warnings.catch_warnings():  # restores showwarning afterwards (tests run the CLI in-process)
                warnings.showwarning = _one_line_warning(warnings.showwarning)
                code = super().main(
                    args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
                )
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(2)
        except AlbsnnError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: object) -> str:
    """A message for stderr: one line, every control character a visible escape.

    An error quotes what the user gave and what a file holds (a layer name, a path): an escape
    sequence or bidi override in it would reach the terminal, a newline would break the one line.
    """
    return visible(str(message))


def _one_line_warning(fallback: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` printing our warnings as ``warning: MESSAGE`` (no file, line or source)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, BudgetWarning):
            click.echo(f"warning: {_one_line(message)}", err=True)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="albsnn-compress")
def cli() -> None:
    """Binarize the layers of a trained spiking network that an accuracy budget affords.

    \b
    albsnn-compress model.pt --budget 0.2      (same as: albsnn-compress compress ...)
    """


def _register_commands() -> None:
    from albsnn_compress.cli import compress, export, import_cmd, inspect, report, train
    from albsnn_compress.cli import eval as eval_

    for module in (compress, export, report, train, inspect, eval_, import_cmd):
        cli.add_command(module.command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (the console script's entry point)."""
    cli.main(args=argv, prog_name="albsnn-compress")


if __name__ == "__main__":
    main()
