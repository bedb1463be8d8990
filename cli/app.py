"""The `ssl4eo-build` command: one sub-command per module, each a thin client of the library."""

from __future__ import annotations

from typing import Annotated

import typer

from .align import align
from .clean import clean
from .doctor import doctor
from .download import download
from .pack import pack
from .report import preview, report
from .run import run
from .sample import sample
from .status import status
from .validate import validate

app = typer.Typer(
    name="ssl4eo-build",
    help="Curate SSL4EO-S12 v1.1 style pretraining datasets from Earth Engine or the simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from ssl4eo_build import __version__

        typer.echo(f"ssl4eo-build {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Curate SSL4EO-S12 v1.1 style pretraining datasets from Earth Engine or the simulator."""


app.command("sample")(sample)
app.command("download")(download)
app.command("align")(align)
app.command("pack")(pack)
app.command("run")(run)
app.command("status")(status)
app.command("validate")(validate)
app.command("doctor")(doctor)
app.command("clean")(clean)
app.command("preview")(preview)
app.command("report")(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
