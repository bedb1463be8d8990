"""`ssl4eo-build doctor`: can this machine build with the configured source?"""

from __future__ import annotations

import typer

from .options import (
    ConfigOpt,
    EeKeyOpt,
    EeProjectOpt,
    SourceOpt,
    VerboseOpt,
    config_or_exit,
    guarded,
    setup_logging,
    source_overrides,
)


def doctor(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    ee_project: EeProjectOpt = None,
    ee_key: EeKeyOpt = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Check credentials, project, API access and one tiny request; say what to fix.

    Safe anywhere: it writes nothing. Exit code 0 when every check passes, 2 otherwise."""
    setup_logging(verbose, False)
    cfg = config_or_exit(verbose, config, source_overrides(source, ee_project, ee_key))
    from ssl4eo_build.sources import doctor as run_checks  # loads on use: a fast --help

    checks = guarded(verbose, lambda: run_checks(cfg))
    for check in checks:
        typer.echo(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(2)
