"""``vigil``: one entry point for the services, the development stack and the tools."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from services.settings import VigilSettings
from shared.secret_files import SecretFileError
from shared.settings import InsecureConfiguration
from shared.yaml_files import load_yaml
from vigil.audit_cli import audit_app, replay
from vigil.keys_cli import keys_app
from vigil.users_cli import users_app

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Vigil: safety monitoring for clinical trials.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
rules_app = typer.Typer(help="The rules service (no sub-command) and rule-pack tools.")
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.command("replay")(replay)


def _settings() -> VigilSettings:
    """The settings, or a short message naming what is wrong with them (exit 2)."""
    try:
        return VigilSettings()
    except (SecretFileError, ValidationError) as error:
        typer.echo(f"vigil: invalid settings: {error}", err=True)
        raise typer.Exit(2) from None


def _serve(
    name: str,
    serve: Callable[[VigilSettings], Coroutine[Any, Any, None]],
    *refusals: type[Exception],
) -> None:
    """Run a service; insecure production settings (and the service's own ``refusals``,
    such as invalid sources) stop it before it listens (exit 2)."""
    refused: tuple[type[Exception], ...] = (InsecureConfiguration, *refusals)
    try:
        asyncio.run(serve(_settings()))
    except refused as error:
        typer.echo(f"vigil {name}: refusing to start: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="Also play a simulated trial.")] = False,
    state_dir: Annotated[
        Path, typer.Option(help="Where the dev stack keeps its data, logs and mail.")
    ] = Path(".vigil"),
) -> None:
    """Run the whole stack on this machine: broker, PostgreSQL, SMTP sink and the services."""
    from shared.db.ownership import MigrationRefused
    from vigil.devstack.console import children_settings, public_url_env, ready_lines
    from vigil.devstack.postgres import PostgresNotInstalled
    from vigil.devstack.stack import build_stack
    from vigil.devstack.supervisor import Supervisor, say

    settings = _settings()
    try:
        children = build_stack(settings, state_dir=state_dir.resolve(), demo=demo)
    except (PostgresNotInstalled, MigrationRefused) as error:
        typer.echo(f"vigil dev: {error}", err=True)
        raise typer.Exit(2) from None

    def started() -> None:
        mail = (
            f"stored in {state_dir / 'mail'} and summarised below"
            if "smtp_url" not in settings.model_fields_set
            else "sent to VIGIL_SMTP_URL"
        )
        children = children_settings(settings, public_url_env(settings, os.environ))
        for line in ready_lines(children, state_dir=state_dir, mail=mail):
            say(line)

    raise typer.Exit(Supervisor(children).run(after_start=started))


@app.command()
def ingest() -> None:
    """Run the ingest service (HTTP API and MLLP)."""
    from services.ingest.domain.sources import InvalidSources
    from services.ingest.entrypoints.mllp_tls import UnsafeMllpSettings
    from services.ingest.main import serve

    _serve("ingest", serve, InvalidSources, UnsafeMllpSettings)


@rules_app.callback(invoke_without_command=True)
def rules(context: typer.Context) -> None:
    """Run the rules service, unless a sub-command is given."""
    if context.invoked_subcommand is not None:
        return
    from services.safety_rules.domain.rule_pack import InvalidRulePack
    from services.safety_rules.main import serve

    try:
        _serve("rules", serve)
    except InvalidRulePack as error:
        typer.echo(f"vigil rules: refusing to start: {error}", err=True)
        raise typer.Exit(2) from None


@rules_app.command("check")
def rules_check(path: Path) -> None:
    """Validate a rule pack and print its rules."""
    from services.safety_rules.adapters.rule_pack_files import load_rule_pack
    from services.safety_rules.domain.rule_pack import InvalidRulePack

    try:
        pack = load_rule_pack(path)
    except InvalidRulePack as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{pack.study_id} rule pack version {pack.version}: {len(pack.rules)} rule(s)")
    header = ("id", "kind", "severity", "condition", "grading", "deadline", "recipients")
    rows = [
        (
            rule.id,
            rule.kind,
            rule.severity,
            rule.describe(),
            rule.grading.label if rule.grading else "-",
            f"{rule.reporting_deadline_hours} h" if rule.reporting_deadline_hours else "-",
            ", ".join(rule.recipients),
        )
        for rule in pack.rules
    ]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for line in (header, tuple("-" * w for w in widths), *rows):
        cells = (str(cell).ljust(w) for cell, w in zip(line, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
    notes = [(rule.id, rule.note) for rule in pack.rules if rule.note]
    for rule_id, note in notes:
        typer.echo(f"note on {rule_id}: {note}")


@rules_app.command("simulate")
def rules_simulate(
    path: Path,
    study: str = typer.Option(..., "--study", help="Study whose stored history to replay."),
) -> None:
    """Replay the stored history through a candidate pack and show what would change."""
    from services.safety_rules.adapters.rule_pack_files import load_rule_pack, load_rule_packs
    from services.safety_rules.domain.rule_pack import InvalidRulePack
    from services.safety_rules.entrypoints.cli import stored_facts
    from services.safety_rules.handlers.simulate import compare, report

    settings = _settings()
    try:
        candidate = load_rule_pack(path)
        current = load_rule_packs(settings.study_dir).get(study)
    except InvalidRulePack as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    if candidate.study_id != study:
        typer.echo(f"vigil rules simulate: {path} is a pack for {candidate.study_id}", err=True)
        raise typer.Exit(1)
    if current is None:
        typer.echo(f"vigil rules simulate: no current pack for {study}", err=True)
        raise typer.Exit(1)
    facts = asyncio.run(stored_facts(settings.database_url, study))
    typer.echo(report(compare(study, facts, current, candidate)))


@rules_app.command("coverage")
def rules_coverage(
    study: Annotated[
        str | None, typer.Option("--study", help="Study whose pack to report (default: all).")
    ] = None,
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            help="Clinical case file (default: tests/data/clinical_cases.yaml when present).",
        ),
    ] = None,
    studies: Annotated[
        Path, typer.Option("--studies", envvar="VIGIL_STUDY_DIR", help="Folder of study packs.")
    ] = Path("studies"),
) -> None:
    """Print, per analyte, the codes and units a pack accepts and the rules reading it, and
    per rule the clinical cases that exercise it (rules with none are listed)."""
    import yaml

    from services.safety_rules.adapters.rule_pack_files import load_rule_packs
    from services.safety_rules.domain.rule_pack import InvalidRulePack
    from services.safety_rules.handlers.coverage import report

    try:
        packs = load_rule_packs(studies)
    except InvalidRulePack as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    if study is not None and study not in packs:
        typer.echo(f"vigil rules coverage: no pack for {study} in {studies}", err=True)
        raise typer.Exit(1)
    default_cases = Path("tests/data/clinical_cases.yaml")
    path = cases if cases is not None else (default_cases if default_cases.is_file() else None)
    case_list = None
    if path is not None:
        try:
            case_list = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            typer.echo(f"vigil rules coverage: cannot read {path}: {error}", err=True)
            raise typer.Exit(1) from None
        if not isinstance(case_list, list):
            typer.echo(f"vigil rules coverage: {path} is not a list of cases", err=True)
            raise typer.Exit(1)
    for study_id in [study] if study is not None else sorted(packs):
        typer.echo(report(packs[study_id], case_list), nl=False)


@rules_app.command("explain")
def rules_explain(signal_id: str) -> None:
    """Print why a signal fired, from the audit log."""
    import uuid

    from services.safety_rules.entrypoints.cli import explain_signal
    from services.safety_rules.handlers.explain_signal import SignalNotFound

    settings = _settings()
    try:
        text = asyncio.run(
            explain_signal(settings.database_url, uuid.UUID(signal_id), settings.study_dir)
        )
    except (SignalNotFound, ValueError) as error:
        typer.echo(f"vigil rules explain: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(text)


@app.command()
def notifier() -> None:
    """Run the notifier service."""
    from services.notifier.adapters.link_keys import LinkKeysRefused
    from services.notifier.adapters.oidc import OidcMisconfigured
    from services.notifier.adapters.secret_box import WorkspaceKeyRefused
    from services.notifier.main import serve

    _serve("notifier", serve, LinkKeysRefused, WorkspaceKeyRefused, OidcMisconfigured)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations not applied yet (idempotent), as the schema owner."""
    from urllib.parse import urlsplit

    from shared.db.migrate import upgrade
    from shared.db.ownership import MigrationRefused

    settings = _settings()
    try:
        applied = asyncio.run(
            upgrade(
                settings.admin_dsn,
                service_role=settings.database_service_role,
                service_password=settings.service_password(),
                owner_role=settings.database_owner_role,
            )
        )
    except MigrationRefused as error:
        typer.echo(f"vigil db upgrade: refused: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # unreachable, or its TLS certificate refused
        server = urlsplit(settings.admin_dsn)
        typer.echo(
            f"vigil db upgrade: cannot connect to PostgreSQL at {server.hostname}:{server.port} "
            f"(VIGIL_DATABASE_ADMIN_URL, else VIGIL_DATABASE_URL): {error}",
            err=True,
        )
        raise typer.Exit(1) from None
    if applied:
        for migration in applied:
            typer.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        typer.echo("schema is current")


def main() -> None:
    app()
