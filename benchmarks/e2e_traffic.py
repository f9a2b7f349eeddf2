"""A trial-shaped stream of lab results for the end-to-end benchmark, and its three senders.

A *visit* is one subject's panel of analytes drawn at one time. Visits are packed into
*units*, each one request or message as a laboratory would send it:

- ``json``: one result per ``POST /v1/lab-results`` (a site typing results in);
- ``batch``: a list of results in one ``POST /v1/lab-results`` (an EDC export);
- ``fhir``: a transaction Bundle of Observations to ``POST /fhir/r4``;
- ``mllp``: one ORU^R01 per visit, one OBX per analyte, over MLLP.

Some visits carry a low haemoglobin (8.2 g/dL: below the study's 9 g/dL threshold, so a
signal and e-mails to the site's investigators); a subject's next visit is normal again, so
the episode resolves and the next low value raises a new signal. Some JSON results are
later corrected (result_status C, same identity, another value).

The bodies are built and serialised before the clock starts: the feeder, which shares the
machine's two cores with the stack, does as little as it can while it is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

STUDY = "NCT05262686"
FHIR_SYSTEM = f"urn:vigil:study:{STUDY}"
SITES = ("PKUPH-01", "PKUPH-02")
CHANNELS = ("json", "batch", "fhir", "mllp")
START, END = b"\x0b", b"\x1c\r"
LOW_HAEMOGLOBIN = "8.2"
# analyte, unit, reference low, reference high, normal value (the first is haemoglobin)
PANEL = (
    ("718-7", "g/dL", "12", "16", "13.1"),
    ("1742-6", "U/L", "7", "40", "22"),
    ("2160-0", "mg/dL", "0.6", "1.1", "0.8"),
    ("751-8", "10*9/L", "1.8", "7.7", "3.9"),
    ("1920-8", "U/L", "10", "35", "25"),
    ("2465-3", "g/L", "7", "16", "10"),
    ("1975-2", "mg/dL", "0.2", "1.2", "0.6"),
)


@dataclass(frozen=True)
class Result:
    subject_id: str
    loinc: str
    unit: str
    low: str
    high: str
    value: str
    collected: datetime
    key: str
    status: str = "F"

    def as_json(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "loinc_code": self.loinc,
            "value": self.value,
            "unit": self.unit,
            "reference_low": self.low,
            "reference_high": self.high,
            "collected_at": self.collected.isoformat(),
            "result_status": self.status,
            "source_message_id": self.key,
        }

    def as_observation(self) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:vigil:bench:observation", "value": self.key}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": self.loinc}]},
            "subject": {"identifier": {"system": FHIR_SYSTEM, "value": self.subject_id}},
            "effectiveDateTime": self.collected.isoformat(),
            "valueQuantity": {
                "value": float(self.value),
                "unit": self.unit,
                "system": "http://unitsofmeasure.org",
                "code": self.unit,
            },
            "referenceRange": [
                {"low": {"value": float(self.low)}, "high": {"value": float(self.high)}}
            ],
        }


@dataclass
class Unit:
    """One request or message: what it carries, and when it was sent and answered."""

    channel: str
    body: bytes
    results: int
    abnormal: int = 0
    sent: float = 0.0
    answered: float = 0.0
    ok: bool = False
    answer: str = ""

    @property
    def digest(self) -> bytes:
        """SHA-256 of the body: how ingest's receipt of it is found."""
        return hashlib.sha256(self.body).digest()


@dataclass
class Mix:
    """Share of the results per channel, and the size of each kind of unit."""

    shares: dict[str, float]
    batch: int = 500
    bundle: int = 50
    obx: int = 5
    abnormal: float = 0.02
    corrections: float = 0.01

    @classmethod
    def parse(cls, text: str, **sizes: Any) -> Mix:
        """``json=10,batch=50,fhir=20,mllp=20``: relative weights, any channel left out
        gets none."""
        shares: dict[str, float] = {}
        for part in text.split(","):
            name, _, weight = part.partition("=")
            if name.strip() not in CHANNELS:
                raise SystemExit(f"--mix: unknown channel {name!r}; use {', '.join(CHANNELS)}")
            shares[name.strip()] = float(weight)
        total = sum(shares.values())
        return cls({name: weight / total for name, weight in shares.items()}, **sizes)


@dataclass
class Trial:
    """Subjects and where each one's clinical time has reached, across phases."""

    subjects: int
    began: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0) - timedelta(days=300)
    )
    visits_done: dict[str, int] = field(default_factory=dict)
    low_last: set[str] = field(default_factory=set)
    run: str = field(default_factory=lambda: f"{random.getrandbits(32):08x}")

    @property
    def names(self) -> list[str]:
        return [f"E2E-{n:05d}" for n in range(self.subjects)]

    def enrolments(self, per_request: int = 1000) -> list[bytes]:
        rows = [
            {
                "subject_id": name,
                "site_id": SITES[n % len(SITES)],
                "sex": "F",
                "birth_date": "1984-03-02",
                "weight_kg": "61",
                "day0": self.began.date().isoformat(),
            }
            for n, name in enumerate(self.names)
        ]
        return [
            orjson.dumps(rows[start : start + per_request])
            for start in range(0, len(rows), per_request)
        ]

    def visit(
        self, subject: str, analytes: int, rng: random.Random, abnormal: float
    ) -> list[Result]:
        n = self.visits_done.get(subject, 0)
        self.visits_done[subject] = n + 1
        collected = self.began + timedelta(days=1 + n // 24, hours=n % 24)
        low = subject not in self.low_last and rng.random() < abnormal
        if low:
            self.low_last.add(subject)
        else:
            self.low_last.discard(subject)
        results = []
        for loinc, unit, ref_low, ref_high, normal in PANEL[:analytes]:
            value = LOW_HAEMOGLOBIN if low and loinc == "718-7" else normal
            key = f"E2E-{self.run}-{subject}-{n}-{loinc}"
            results.append(Result(subject, loinc, unit, ref_low, ref_high, value, collected, key))
        return results


def _channel_for(rng: random.Random, mix: Mix) -> str:
    point, total = rng.random(), 0.0
    for name, share in mix.shares.items():
        total += share
        if point < total:
            return name
    return next(iter(mix.shares))


def _abnormal(results: Sequence[Result]) -> int:
    return sum(1 for r in results if r.loinc == "718-7" and r.value == LOW_HAEMOGLOBIN)


def hl7_oru(results: Sequence[Result], control: str) -> bytes:
    """An ORU^R01 of one visit from the hospital laboratory (MSH-4 PKUPH-LAB)."""
    first = results[0]
    stamp = first.collected.strftime("%Y%m%d%H%M%S%z")
    segments = [
        f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|{stamp}||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||H{control[-6:]}^^^PKUPH^MR~{first.subject_id}^^^{STUDY}^SS",
        f"OBR|1|{control}|{control}|58410-2^CBC^LN|||{stamp}",
    ]
    for n, r in enumerate(results, start=1):
        flag = "L" if float(r.value) < float(r.low) else "N"
        segments.append(
            f"OBX|{n}|NM|{r.loinc}^^LN||{r.value}|{r.unit}|{r.low}-{r.high}|{flag}|||F|||{stamp}"
        )
    return "\r".join(segments).encode()


def fhir_bundle(results: Sequence[Result]) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r.as_observation(),
                    "request": {"method": "POST", "url": "Observation"},
                }
                for r in results
            ],
        }
    )


def build_units(
    trial: Trial, mix: Mix, results: int, *, seed: int, paced_rate: int | None = None
) -> list[Unit]:
    """Units carrying about ``results`` results in the given mix, in sending order.

    Paced, each unit carries at most about 50 ms of the rate, so that a result does not
    wait at the sender for its batch to fill: batches and bundles are cut down to it.
    """
    rng = random.Random(seed)
    batch, bundle = mix.batch, mix.bundle
    if paced_rate is not None:
        batch = max(1, min(batch, paced_rate // 20))
        bundle = max(1, min(bundle, paced_rate // 20))
    names = trial.names
    pending: dict[str, list[Result]] = {name: [] for name in CHANNELS}
    units: list[Unit] = []
    corrections: list[Result] = []
    made, n = 0, 0

    def flush(channel: str, limit: int) -> None:
        rows = pending[channel]
        while len(rows) >= limit:
            chunk, pending[channel] = rows[:limit], rows[limit:]
            rows = pending[channel]
            if channel == "fhir":
                units.append(Unit("fhir", fhir_bundle(chunk), len(chunk), _abnormal(chunk)))
            else:
                body = orjson.dumps([r.as_json() for r in chunk])
                units.append(Unit("batch", body, len(chunk), _abnormal(chunk)))

    while made < results:
        subject = names[n % len(names)]
        n += 1
        visit = trial.visit(subject, mix.obx, rng, mix.abnormal)
        channel = _channel_for(rng, mix)
        made += len(visit)
        if channel == "mllp":
            control = f"E{trial.run}{n:09d}"
            units.append(Unit("mllp", hl7_oru(visit, control), len(visit), _abnormal(visit)))
        elif channel == "json":
            for r in visit:
                units.append(Unit("json", orjson.dumps(r.as_json()), 1, _abnormal([r])))
        else:
            pending[channel].extend(visit)
            flush(channel, batch if channel == "batch" else bundle)
        if channel in ("json", "batch") and rng.random() < mix.corrections:
            original = visit[1 if len(visit) > 1 else 0]
            corrections.append(
                Result(
                    **{**original.__dict__, "value": str(float(original.value) + 1), "status": "C"}
                )
            )
    flush("batch", 1)
    flush("fhir", 1)
    # a correction goes a while after its original: spread over the second half
    half = len(units) // 2
    for c, correction in enumerate(corrections):
        at = half + (c * max(1, len(units) - half)) // max(1, len(corrections)) + c
        units.insert(min(at, len(units)), Unit("json", orjson.dumps(correction.as_json()), 1))
    return units


class MllpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> MllpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, message: bytes) -> str:
        """Send one message; its ACK's MSA-1 (AA, AE, AR)."""
        self.writer.write(START + message + END)
        await self.writer.drain()
        answer = await self.reader.readuntil(END)
        at = answer.find(b"MSA|")
        return answer[at + 4 : at + 6].decode() if at >= 0 else "?"

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class Senders:
    """HTTP clients and MLLP connections, shared by the units of one phase."""

    def __init__(self, ingest_url: str, mllp_port: int, api_key: str, connections: int) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.AsyncClient(
            base_url=ingest_url,
            timeout=120,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._mllp_port = mllp_port
        self._mllp: asyncio.Queue[MllpConnection] = asyncio.Queue()
        self._mllp_open = 0
        self._mllp_max = connections

    async def _connection(self) -> MllpConnection:
        if self._mllp.empty() and self._mllp_open < self._mllp_max:
            self._mllp_open += 1
            return await MllpConnection.open(self._mllp_port)
        return await self._mllp.get()

    async def send(self, unit: Unit) -> None:
        """Send one unit, retrying what ingest asks to be sent later (429, 503, AE); a
        connection that breaks fails the unit (it may have been kept: not sent again)."""
        for _ in range(20):
            unit.sent = unit.sent or time.time()
            try:
                retry = await self._send_once(unit)
            except (httpx.TransportError, OSError, asyncio.IncompleteReadError) as error:
                unit.answer, unit.ok, retry = type(error).__name__, False, False
            unit.answered = time.time()
            if not retry:
                return
            await asyncio.sleep(0.2)

    async def _send_once(self, unit: Unit) -> bool:
        """Send the unit once; True when ingest asked for it to be sent again later."""
        if unit.channel == "mllp":
            connection = await self._connection()
            try:
                unit.answer = await connection.exchange(unit.body)
            except BaseException:
                self._mllp_open -= 1  # broken: a new one is opened in its place
                raise
            self._mllp.put_nowait(connection)
            unit.ok = unit.answer == "AA"
            return unit.answer == "AE"
        path = "/fhir/r4" if unit.channel == "fhir" else "/v1/lab-results"
        kind = "application/fhir+json" if unit.channel == "fhir" else "application/json"
        response = await self._http.post(
            path, content=unit.body, headers={**self._headers, "content-type": kind}
        )
        unit.answer = str(response.status_code)
        unit.ok = response.status_code in (200, 201, 202)
        return response.status_code in (429, 503)

    async def post(self, path: str, body: bytes) -> httpx.Response:
        return await self._http.post(
            path, content=body, headers={**self._headers, "content-type": "application/json"}
        )

    async def close(self) -> None:
        await self._http.aclose()
        while not self._mllp.empty():
            await self._mllp.get_nowait().close()


async def flood(senders: Senders, units: list[Unit], concurrency: int) -> None:
    """Send every unit as fast as ingest takes them, ``concurrency`` at a time."""
    queue: asyncio.Queue[Unit] = asyncio.Queue()
    for unit in units:
        queue.put_nowait(unit)

    async def worker() -> None:
        while not queue.empty():
            await senders.send(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def paced(senders: Senders, units: list[Unit], rate: int) -> None:
    """Send each unit when the results before it are due at ``rate`` results/s."""
    began, carried = time.time(), 0
    tasks: set[asyncio.Task[None]] = set()
    for unit in units:
        due = began + carried / rate
        carried += unit.results
        if (pause := due - time.time()) > 0:
            await asyncio.sleep(pause)
        task = asyncio.create_task(senders.send(unit))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
