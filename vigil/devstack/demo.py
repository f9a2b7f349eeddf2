"""A simulated NCT05262686-like trial, played against ingest, compressed in time.

Twenty subjects over two sites; visits at screening, Day 0 and every four weeks to week 24;
each visit draws haemoglobin, ALT, creatinine and neutrophils, sent as JSON. A few subjects
have a scripted haemoglobin drop, reported in different units and over each channel (JSON,
HL7 v2 over MLLP, FHIR R4, the last two naming the subject by the study's identifier
system), so alerts arrive within a minute.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from vigil.devstack.demo_channels import fhir_haemoglobin, hl7_haemoglobin, send_mllp

VISIT_WEEKS = (-2, 0, 4, 8, 12, 16, 20, 24)  # -2 is screening
SITES = ("PKUPH-01", "PKUPH-02")


@dataclass(frozen=True)
class HbDrop:
    """A scripted fall in haemoglobin: at ``week`` the subject reports ``value`` ``unit``,
    sent over ``channel``."""

    week: int
    value: str
    unit: str
    channel: str = "json"  # json, hl7 (MLLP) or fhir


# Below 9 g/dL in three different units and over the three channels, so unit conversion
# and every way in are part of the demo.
SCRIPTED_DROPS = {
    "01-003": HbDrop(4, "8.6", "g/dL"),
    "02-014": HbDrop(8, "84", "g/L", "hl7"),
    "01-007": HbDrop(12, "5.3", "mmol/L", "fhir"),
}


@dataclass(frozen=True)
class DemoSubject:
    subject_id: str
    site_id: str
    sex: str
    birth_date: date
    weight_kg: Decimal


def subjects(rng: random.Random) -> list[DemoSubject]:
    """Adults 18-70 with SLE are mostly women; ten per site."""
    found = []
    for index in range(20):
        site = index // 10
        sex = "F" if rng.random() < 0.85 else "M"
        age_days = rng.randint(19 * 365, 69 * 365)
        found.append(
            DemoSubject(
                subject_id=f"{site + 1:02d}-{index + 1:03d}",
                site_id=SITES[site],
                sex=sex,
                birth_date=date(2026, 1, 1) - timedelta(days=age_days),
                weight_kg=Decimal(rng.randint(48, 85)),
            )
        )
    return found


def visit_results(
    subject: DemoSubject, week: int, collected: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """The lab results of one visit."""
    drop = SCRIPTED_DROPS.get(subject.subject_id)
    hb_value, hb_unit = f"{rng.uniform(11.5, 14.5):.1f}", "g/dL"
    if subject.site_id == SITES[1]:  # site 02's lab reports haemoglobin in g/L
        hb_value, hb_unit = f"{Decimal(hb_value) * 10:.0f}", "g/L"
    if drop and drop.week == week:
        hb_value, hb_unit = drop.value, drop.unit
    low, high = ("12", "16") if hb_unit == "g/dL" else ("120", "160")
    if hb_unit == "mmol/L":
        low, high = "7.4", "9.9"
    stamp = collected.isoformat()
    message_id = f"DEMO-{subject.subject_id}-W{week:+03d}"
    common = {
        "subject_id": subject.subject_id,
        "collected_at": stamp,
        "result_status": "F",
    }
    return [
        {
            **common,
            "loinc_code": "718-7",
            "value": hb_value,
            "unit": hb_unit,
            "reference_low": low,
            "reference_high": high,
            "source_message_id": f"{message_id}-HGB",
        },
        {
            **common,
            "loinc_code": "1742-6",
            "value": f"{rng.uniform(12, 38):.0f}",
            "unit": "U/L",
            "reference_high": "40",
            "source_message_id": f"{message_id}-ALT",
        },
        {
            **common,
            "loinc_code": "2160-0",
            "value": f"{rng.uniform(0.55, 1.0):.2f}",
            "unit": "mg/dL",
            "reference_low": "0.5",
            "reference_high": "1.1",
            "source_message_id": f"{message_id}-CREA",
        },
        {
            **common,
            "loinc_code": "751-8",
            "value": f"{rng.uniform(2.0, 6.5):.1f}",
            "unit": "10*9/L",
            "reference_low": "1.8",
            "reference_high": "7.5",
            "source_message_id": f"{message_id}-NEUT",
        },
    ]


def post(client: httpx.Client, path: str, body: list[dict[str, Any]]) -> None:
    """POST with retries while ingest or the broker is not available."""
    delay = 0.5
    for _ in range(30):
        try:
            response = client.post(path, json=body)
        except httpx.TransportError as error:
            print(f"demo | ingest unreachable ({error}); retrying", flush=True)
        else:
            if response.status_code == 202:
                return
            if response.status_code != 503:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
            print("demo | broker unavailable; retrying", flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 5)
    raise RuntimeError(f"{path}: ingest did not accept the request")


def read_api_key(path: Path) -> str:
    """The key `vigil dev` wrote; a clear stop when it is not there."""
    try:
        return path.read_text().strip()
    except OSError as error:
        raise RuntimeError(
            f"cannot read the API key from {path} ({error.strerror}); `vigil dev` writes it "
            "there on start"
        ) from None


def send_scripted(
    client: httpx.Client, mllp: tuple[str, int], result: dict[str, Any], channel: str
) -> None:
    """Send one scripted haemoglobin over HL7 v2 (MLLP) or FHIR, with retries while
    ingest is not ready."""
    fields = (
        result["subject_id"],
        result["value"],
        result["unit"],
        result["reference_low"],
        result["reference_high"],
        datetime.fromisoformat(result["collected_at"]),
        result["source_message_id"],
    )
    delay = 0.5
    for _ in range(30):
        try:
            if channel == "hl7":
                answer = send_mllp(*mllp, hl7_haemoglobin(*fields))
                if answer == "AA":
                    return
                if answer != "AE":  # AE: try later (the broker or database is away)
                    raise RuntimeError(f"MLLP answered {answer or 'nothing'}")
            else:
                response = client.post(
                    "/fhir/r4/Observation",
                    json=fhir_haemoglobin(*fields),
                    headers={"content-type": "application/fhir+json"},
                )
                if response.status_code == 201:
                    return
                if response.status_code != 503:
                    raise RuntimeError(f"FHIR answered {response.status_code}: {response.text}")
        except OSError as error:
            print(f"demo | ingest unreachable over {channel} ({error}); retrying", flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 5)
    raise RuntimeError(f"ingest did not accept the {channel} message")


def play(
    ingest_url: str,
    *,
    api_key: str,
    seconds_per_week: float,
    mllp: tuple[str, int] = ("127.0.0.1", 2575),
    seed: int = 5262686,
) -> None:
    """Enrol the subjects, then report each visit's results, one compressed week at a time."""
    rng = random.Random(seed)
    cohort = subjects(rng)
    day0 = datetime.now(UTC).replace(microsecond=0) - timedelta(weeks=26)
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=ingest_url, timeout=30, headers=headers) as client:
        post(
            client,
            "/v1/subjects",
            [
                {
                    "subject_id": s.subject_id,
                    "site_id": s.site_id,
                    "sex": s.sex,
                    "birth_date": s.birth_date.isoformat(),
                    "weight_kg": str(s.weight_kg),
                }
                for s in cohort
            ],
        )
        print(f"demo | enrolled {len(cohort)} subjects at {', '.join(SITES)}", flush=True)
        for week in VISIT_WEEKS:
            collected = day0 + timedelta(weeks=week, hours=9)
            body = [r for s in cohort for r in visit_results(s, week, collected, rng)]
            elsewhere = {
                f"DEMO-{sid}-W{week:+03d}-HGB": drop.channel
                for sid, drop in SCRIPTED_DROPS.items()
                if drop.week == week and drop.channel != "json"
            }
            post(
                client,
                "/v1/lab-results",
                [r for r in body if r["source_message_id"] not in elsewhere],
            )
            for result in body:
                if (channel := elsewhere.get(result["source_message_id"])) is not None:
                    send_scripted(client, mllp, result, channel)
            label = "screening" if week < 0 else f"week {week}"
            drops = [
                f"{sid}" + ("" if d.channel == "json" else f" over {d.channel.upper()}")
                for sid, d in SCRIPTED_DROPS.items()
                if d.week == week
            ]
            note = f" (haemoglobin drop scripted for {', '.join(drops)})" if drops else ""
            print(f"demo | {label}: {len(body)} lab results sent{note}", flush=True)
            time.sleep(seconds_per_week * 4)
    print("demo | trial played to week 24", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingest-url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key-file", type=Path, default=Path(".vigil/dev-api-key"))
    parser.add_argument("--mllp-host", default="127.0.0.1")
    parser.add_argument("--mllp-port", type=int, default=2575)
    parser.add_argument("--seconds-per-week", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        play(
            args.ingest_url,
            api_key=read_api_key(args.api_key_file),
            seconds_per_week=args.seconds_per_week,
            mllp=(args.mllp_host, args.mllp_port),
        )
    except RuntimeError as error:
        print(f"demo | stopped: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
