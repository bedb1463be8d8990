"""The `ssl4eo-build` command: one sub-command per module, each a thin client of the library."""

from __future__ import annotations

import typer

from .align import align
from .clean import clean
from .doctor import doctor
from .download import download
from .pack import pack
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
)
app.command("sample")(sample)
app.command("download")(download)
app.command("align")(align)
app.command("pack")(pack)
app.command("run")(run)
app.command("status")(status)
app.command("validate")(validate)
app.command("doctor")(doctor)
app.command("clean")(clean)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
