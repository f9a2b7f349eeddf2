"""``vigil audit ...`` and ``vigil replay``: the inspector's and the operator's tools."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from services.settings import VigilSettings

audit_app = typer.Typer(no_args_is_help=True, help="The audit log: verify, anchor, export.")


async def _connect(settings: VigilSettings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database_url)


@audit_app.command("verify")
def verify(
    from_anchor: Annotated[
        bool,
        typer.Option(
            "--from-anchor",
            help="Quicker: re-hash only the rows after the newest verified anchor (the output "
            "says which positions were not re-hashed). Anchors are checked either way.",
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Re-hash every row: the default; kept for scripts that pass it."
        ),
    ] = False,
    anchor_file: Annotated[
        Path | None, typer.Option(help="Anchor file (default: VIGIL_AUDIT_ANCHOR_FILE).")
    ] = None,
) -> None:
    """Re-hash every row of the chain and check the anchors; exit 1 at the first break."""
    from shared.eventstore.audit import audit_verify

    if full and from_anchor:
        typer.echo("--full and --from-anchor contradict each other: give one", err=True)
        raise typer.Exit(2)
    settings = VigilSettings()

    async def run() -> bool:
        from shared.db.pool import create_pool

        pool = await create_pool(settings.database_url, max_size=2)
        try:
            result = await audit_verify(
                pool, anchor_file or settings.audit_anchor_file, from_anchor=from_anchor
            )
        finally:
            await pool.close()
        for line in result.lines():
            typer.echo(line)
        return result.ok

    if not asyncio.run(run()):
        raise typer.Exit(1)


@audit_app.command("anchor")
def anchor(
    anchor_file: Annotated[
        Path | None, typer.Option(help="Anchor file (default: VIGIL_AUDIT_ANCHOR_FILE).")
    ] = None,
) -> None:
    """Record the chain head outside the database (run it from cron, for example)."""
    from shared.eventstore.anchors import record_anchor

    settings = VigilSettings()

    async def run() -> None:
        connection = await _connect(settings)
        try:
            recorded = await record_anchor(
                connection, anchor_file or settings.audit_anchor_file, "anchored"
            )
        finally:
            await connection.close()
        typer.echo(f"anchored position {recorded.position} hash {recorded.hash}")

    asyncio.run(run())


@audit_app.command("export")
def export(
    study: Annotated[str, typer.Option(help="Study id.")],
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Write a study's (or subject's) full history with hashes."""
    from shared.eventstore.export import ExportFormat, ExportSummary, write_export

    if format_ not in ("jsonl", "csv"):
        typer.echo(f"--format must be jsonl or csv, not {format_!r}", err=True)
        raise typer.Exit(2)
    fmt: ExportFormat = "csv" if format_ == "csv" else "jsonl"
    settings = VigilSettings()

    async def run() -> ExportSummary:
        connection = await _connect(settings)
        try:
            if output is None:
                return await write_export(
                    connection,
                    sys.stdout,
                    study=study,
                    subject=subject,
                    fmt=fmt,
                )
            with output.open("w", newline="") as file:
                return await write_export(
                    connection,
                    file,
                    study=study,
                    subject=subject,
                    fmt=fmt,
                )
        finally:
            await connection.close()

    summary = asyncio.run(run())
    typer.echo(f"exported {summary.count} event(s)", err=True)
    if summary.altered:
        # the export is complete (rows are selected by their hashed content), but the log
        # was edited: say where, loudly
        typer.echo(
            f"WARNING: the audit log was altered: the study_id or subject_id columns of "
            f"position(s) {', '.join(map(str, summary.altered))} differ from their hashed "
            "envelope (exported as hashed); run `vigil audit verify`",
            err=True,
        )


# subject_state: the rules service's; signal_inbox: the notifier's (the workspace inbox)
PROJECTIONS = ("subject_state", "signal_inbox")


def replay(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(PROJECTIONS)}.")]) -> None:
    """Drop a projection and rebuild it from the whole event store."""
    from services.notifier.adapters.signal_inbox import SignalInboxProjection
    from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
    from shared.db.pool import create_pool
    from shared.projections import Projection, ProjectionRunner

    if name not in PROJECTIONS:
        typer.echo(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}", err=True)
        raise typer.Exit(2)
    settings = VigilSettings()

    async def run() -> int:
        pool = await create_pool(settings.database_url)
        try:
            projection: Projection = (
                SignalInboxProjection() if name == "signal_inbox" else SubjectStateProjection()
            )
            return await ProjectionRunner(pool, projection).rebuild()
        finally:
            await pool.close()

    typer.echo(f"rebuilt {name} from {asyncio.run(run())} event(s)")
