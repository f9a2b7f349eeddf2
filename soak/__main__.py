"""``python -m soak``: run the soak and print its report; exit 1 when a target is missed,
2 when the soak could not run at all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from soak.client import CredentialRefused
from soak.config import POISON_KINDS, SoakConfig, full, short
from soak.run import run


def parse(argv: list[str] | None = None) -> SoakConfig:
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="The whole stack under a mixed stream, poison and scheduled faults; "
        "prints a report and exits 1 on any loss. Defaults: the full soak.",
    )
    parser.add_argument("--short", action="store_true", help="the short variant make test runs")
    parser.add_argument("--events", type=int, help="facts in the stream (enrolments included)")
    parser.add_argument("--rate", type=float, help="facts per second")
    parser.add_argument("--seed", type=int, help="the same seed gives the same stream and faults")
    parser.add_argument("--subjects", type=int, help="subjects (default: events / 100)")
    parser.add_argument("--rules-kills", type=int, help="SIGKILLs of the rules service")
    parser.add_argument("--ingest-kills", type=int, help="SIGKILLs of ingest")
    parser.add_argument("--notifier-kills", type=int, help="SIGKILLs of the notifier")
    parser.add_argument("--broker-restarts", type=int, help="broker restarts (it forgets all)")
    parser.add_argument("--postgres-restarts", type=int, help="PostgreSQL immediate restarts")
    parser.add_argument("--smtp-outages", type=int, help="SMTP outages")
    parser.add_argument("--smtp-outage-seconds", type=float, help="length of one SMTP outage")
    parser.add_argument(
        "--poison",
        help=f"comma-separated poison kinds, or 'none' (default: all of {', '.join(POISON_KINDS)})",
    )
    parser.add_argument("--poison-every", type=int, help="one poison message every N messages")
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        help="faults on different components may coincide (default: yes; --short: no)",
    )
    parser.add_argument("--drain-timeout", type=float, help="seconds to wait for the pipeline")
    parser.add_argument("--state-dir", type=Path, help="folder for logs and data (kept)")
    args = parser.parse_args(argv)
    config = short() if args.short else full()
    counts = {
        name: value
        for name in (
            "rules_kills",
            "ingest_kills",
            "notifier_kills",
            "broker_restarts",
            "postgres_restarts",
            "smtp_outages",
            "smtp_outage_seconds",
        )
        if (value := getattr(args, name)) is not None
    }
    changes: dict[str, object] = {
        name: value
        for name in ("events", "rate", "seed", "subjects", "poison_every", "state_dir")
        if (value := getattr(args, name)) is not None
    }
    if counts:
        changes["faults"] = replace(config.faults, **counts)
    if args.overlap is not None:
        changes["overlap"] = args.overlap
    if args.drain_timeout is not None:
        changes["drain_timeout_seconds"] = args.drain_timeout
    if args.poison is not None:
        kinds = () if args.poison == "none" else tuple(k.strip() for k in args.poison.split(","))
        unknown = sorted(set(kinds) - set(POISON_KINDS))
        if unknown:
            parser.error(f"unknown poison kind(s) {unknown}; choose from {', '.join(POISON_KINDS)}")
        changes["poison_kinds"] = kinds
    return replace(config, **changes)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    try:
        outcome = asyncio.run(run(config))
    except (CredentialRefused, RuntimeError, TimeoutError) as error:
        # the soak could not run (a component did not start, a credential was refused):
        # no figures, so no verdict on Vigil
        print(f"soak | could not run: {error}", file=sys.stderr, flush=True)
        return 2
    print(outcome.report, flush=True)
    return 0 if outcome.figures.passed else 1


if __name__ == "__main__":
    sys.exit(main())
