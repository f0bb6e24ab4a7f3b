"""Run the CLI in-process and show everything when an expectation fails (black's invokeBlack)."""

from __future__ import annotations

from click.testing import CliRunner, Result

from albsnn_compress.cli.main import cli


def run_cli(args: list[str], expected_exit: int = 0) -> Result:
    """Invoke ``albsnn-compress ARGS`` through the real entry point (its error mapping included)."""
    runner = CliRunner()
    result = runner.invoke(cli, args, catch_exceptions=True, prog_name="albsnn-compress")
    detail = (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )
    assert result.exit_code == expected_exit, detail
    return result
