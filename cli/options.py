"""Options shared by every command, defined once, and the error boundary of the CLI."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ssl4eo_build.config import Config, load_config
from ssl4eo_build.errors import (
    STORAGE_ERRNOS,
    IncompleteError,
    UserError,
    describe_os_error,
)
from ssl4eo_build.executor import DaskExecutor, check_scheduler

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML recipe (default: the built-in v1.1 values)."),
]
WorkDirOpt = Annotated[
    Path, typer.Option("--work-dir", "-w", help="Work directory holding the manifest and files.")
]
VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More log output; tracebacks on errors.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Continue although the config differs from the recorded one."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Override sample.seed.")]
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="Override download.source (synthetic, earthengine).")
]
EeProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--ee-project",
        help="Earth Engine project (overrides earthengine.project; default $EE_PROJECT).",
    ),
]
EeKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--ee-key",
        help="Service-account JSON key for Earth Engine (default: application default "
        "credentials).",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", help="zarr (v1.1 shards), webdataset (per-sample tars) or both (pack.format)."
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="Concurrent workers (at least 1).")
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Process at most this many locations (at least 1)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786) or local:N for a LocalCluster of N "
        "worker processes; default: the local executor.",
    ),
]
DEFAULT_WORK_DIR = Path("work")


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # Dask's own start-up chatter only at -vv.
    logging.getLogger("distributed").setLevel(level if verbose > 1 else logging.WARNING)


def on_executor(scheduler: str | None, call: Callable[[DaskExecutor | None], T]) -> T:
    """Run ``call`` with a Dask executor for ``--scheduler``, or with None (local executor)."""
    if scheduler is None:
        return call(None)
    check_scheduler(scheduler)  # before a cluster starts or anything is written
    with DaskExecutor(scheduler) as dask:
        return call(dask)


def config_or_exit(verbose: int, path: Path | None, overrides: dict[str, Any]) -> Config:
    """The configuration with the command's overrides; a bad file or key exits with code 2."""
    return guarded(verbose, lambda: load_config(path, overrides))


def source_overrides(
    source: str | None, ee_project: str | None, ee_key: Path | None
) -> dict[str, Any]:
    """Dotted config overrides for the source options (unset options change nothing)."""
    return {
        "download.source": source,
        "earthengine.project": ee_project,
        "earthengine.service_account_key": ee_key,
    }


def guarded(verbose: int, call: Callable[[], T]) -> T:
    """Run one library call at the error boundary of the CLI: user errors (bad input, a busy
    work dir, a full or read-only disk) become one paragraph on stderr and exit code 2; an
    unfinished goal exits 1; Ctrl-C exits 130. Tracebacks only with ``-v``."""
    try:
        return call()
    except UserError as exc:
        _fail(verbose, str(exc), 2)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        _fail(verbose, describe_os_error(exc, "writing"), 2)
    except IncompleteError as exc:
        _fail(verbose, str(exc), 1)
    except KeyboardInterrupt:
        _fail(
            verbose,
            "interrupted. Everything finished before the interruption is kept; run the same "
            "command again to continue.",
            130,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _fail(verbose: int, message: str, code: int) -> None:
    if verbose:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code) from None
