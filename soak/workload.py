"""The stream, generated from a seed: subjects, visits, scripted findings and poison.

Pure: no I/O. Every fact carries the key under which ingest will store it (a lab result's
source message id, an adverse event's id, a medication's id, an enrolment's subject), so
the checker can find each acknowledged fact in the audit log whatever channel carried it.

The background is normal: every value sits well inside its range, no serious adverse
event, no corticosteroid, so no rule fires on it. A share of the subjects gets one
scripted finding each (haemoglobin 7.0 g/dL, ALT 3.75 x ULN, a serious adverse event or
prednisone 20 mg a day), and the rules that finding must fire are known: the checker
expects exactly one signal for each of those (subject, rule) episodes and none elsewhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from soak.config import SoakConfig

STUDY = "NCT05262686"
SITES = ("PKUPH-01", "PKUPH-02")
START = datetime(2026, 3, 2, 8, tzinfo=UTC)
VISIT_EVERY = timedelta(hours=8)
FIRST_SCRIPTED_VISIT = 2  # scripted findings come after a baseline, and are resolved later
MEAN_FACTS_PER_VISIT = 5.2  # about 70 % of the panel, and the odd AE or medication
Channel = Literal["json", "fhir", "mllp"]
CHANNELS: tuple[Channel, ...] = ("json", "mllp", "fhir")


@dataclass(frozen=True)
class Analyte:
    loinc: str
    name: str
    unit: str
    low: Decimal
    high: Decimal
    normal: tuple[float, float]  # background values are drawn from this band


PANEL = (
    Analyte("718-7", "Hemoglobin", "g/dL", Decimal(12), Decimal(16), (13.0, 14.5)),
    Analyte("751-8", "Neutrophils", "10*9/L", Decimal("1.8"), Decimal("7.7"), (3.5, 4.5)),
    Analyte("777-3", "Platelets", "10*9/L", Decimal(150), Decimal(400), (220, 260)),
    Analyte("1742-6", "ALT", "U/L", Decimal(7), Decimal(40), (18, 26)),
    Analyte("1920-8", "AST", "U/L", Decimal(10), Decimal(35), (20, 28)),
    Analyte("1975-2", "Bilirubin", "mg/dL", Decimal("0.2"), Decimal("1.2"), (0.5, 0.7)),
    Analyte("2465-3", "IgG", "g/L", Decimal(7), Decimal(16), (10.0, 11.0)),
)
HB, ALT = PANEL[0], PANEL[3]

# What each scripted finding is, and the rules of the NCT05262686 pack it must fire.
ScriptedKind = Literal["anaemia", "liver", "sae", "steroid"]
SCRIPTED_KINDS: tuple[ScriptedKind, ...] = ("anaemia", "liver", "sae", "steroid")
RULES_FIRED: dict[ScriptedKind, tuple[str, ...]] = {
    "anaemia": ("anaemia-hb-le-9",),
    "liver": ("liver-alt-ast-gt-3-uln", "alt-ast-above-uln"),
    "sae": ("sae-any",),
    "steroid": ("steroid-prednisone-equivalent-gt-10",),
}


@dataclass(frozen=True)
class Subject:
    id: str
    site: str
    sex: Literal["F", "M"]
    birth_date: date
    weight_kg: Decimal


@dataclass(frozen=True)
class Enrolment:
    subject: Subject
    kind: Literal["enrol"] = "enrol"

    @property
    def key(self) -> str:
        return self.subject.id


@dataclass(frozen=True)
class Lab:
    subject: str
    analyte: Analyte
    value: Decimal
    collected_at: datetime
    key: str  # the source message id ingest will store
    kind: Literal["lab"] = "lab"


@dataclass(frozen=True)
class AdverseEvent:
    subject: str
    key: str  # the AE id
    term: str
    onset: datetime
    serious: bool
    kind: Literal["ae"] = "ae"


@dataclass(frozen=True)
class Medication:
    subject: str
    key: str  # the medication id
    category: Literal["concomitant", "study-drug"]
    drug: str
    dose: Decimal
    unit: str
    route: str
    frequency: str
    start: datetime
    kind: Literal["med"] = "med"


Fact = Enrolment | Lab | AdverseEvent | Medication
FactKey = tuple[str, str]  # (kind, key): what the audit log is searched for


def fact_key(fact: Fact) -> FactKey:
    return (fact.kind, fact.key)


@dataclass(frozen=True)
class Item:
    """One message to send: a JSON request, a FHIR resource or Bundle, an HL7 message."""

    seq: int
    channel: Channel
    subject: str
    facts: tuple[Fact, ...]
    poison: str | None = None  # a poison kind (see config.POISON_KINDS); facts then empty

    @property
    def message_id(self) -> str:
        """Unique per item: the HL7 control id, the FHIR and JSON ids derive from it."""
        return f"SK{self.seq:07d}"


@dataclass(frozen=True, order=True)
class Episode:
    subject: str
    rule_id: str


@dataclass(frozen=True)
class Workload:
    subjects: tuple[Subject, ...]
    enrolments: tuple[Item, ...]
    stream: tuple[Item, ...]
    expected: frozenset[Episode]
    # the fact whose acknowledgement starts each expected episode's delivery clock
    triggers: dict[Episode, FactKey] = field(default_factory=dict)

    @property
    def fact_count(self) -> int:
        return sum(len(item.facts) for item in (*self.enrolments, *self.stream))


def _subjects(count: int, rng: random.Random) -> tuple[Subject, ...]:
    return tuple(
        Subject(
            id=f"SK-{n:05d}",
            site=SITES[n % len(SITES)],
            sex="F" if n % 3 else "M",
            birth_date=date(1970 + rng.randrange(25), 1 + rng.randrange(12), 1 + rng.randrange(28)),
            weight_kg=Decimal(50 + rng.randrange(35)),
        )
        for n in range(count)
    )


class _Builder:
    """Accumulates items in send order, numbering them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items: list[Item] = []

    @property
    def next_seq(self) -> int:
        return len(self.items) + 1

    def add(
        self, channel: Channel, subject: str, facts: tuple[Fact, ...], poison: str | None = None
    ) -> Item:
        item = Item(self.next_seq, channel, subject, facts, poison)
        self.items.append(item)
        return item

    def lab_key(self, channel: Channel, seq: int, n: int) -> str:
        """The source message id ingest derives for the n-th result of message ``seq``."""
        message = f"SK{seq:07d}"
        if channel == "mllp":
            return f"{message}/OBR1/OBX{n}"
        if channel == "fhir":
            return f"fhir:Observation/{message.lower()}-{n}"
        return f"{message}-{n}"

    def visit(self, subject: Subject, visit: int, finding: ScriptedKind | None) -> list[Item]:
        rng, when = self.rng, START + visit * VISIT_EVERY
        channel = rng.choices(CHANNELS, weights=(4, 4, 2))[0]
        analytes = [a for a in PANEL if rng.random() < 0.7] or [HB]
        if finding == "anaemia" and HB not in analytes:
            analytes.insert(0, HB)
        if finding == "liver" and ALT not in analytes:
            analytes.append(ALT)
        seq, labs = self.next_seq, []
        for n, analyte in enumerate(analytes, start=1):
            value = Decimal(str(round(rng.uniform(*analyte.normal), 1)))
            if finding == "anaemia" and analyte is HB:
                value = Decimal("7.0")
            if finding == "liver" and analyte is ALT:
                value = Decimal(150)  # 3.75 x the ULN of 40
            taken = when + timedelta(minutes=n)
            labs.append(Lab(subject.id, analyte, value, taken, self.lab_key(channel, seq, n)))
        items = [self.add(channel, subject.id, tuple(labs))]
        ae_channel: Channel = "json" if rng.random() < 0.6 else "fhir"
        if finding == "sae" or rng.random() < 0.05:
            ae = AdverseEvent(
                subject.id,
                f"AE-SK{self.next_seq:07d}",
                "Syncope" if finding == "sae" else "Headache",
                when + timedelta(hours=1),
                serious=finding == "sae",
            )
            items.append(self.add(ae_channel, subject.id, (ae,)))
        if finding == "steroid" or rng.random() < 0.05:
            items.append(self.add("json", subject.id, (self.medication(subject, when, finding),)))
        return items

    def medication(
        self, subject: Subject, when: datetime, finding: ScriptedKind | None
    ) -> Medication:
        key, start = f"MED-SK{self.next_seq:07d}", when + timedelta(hours=2)
        if finding == "steroid":
            return Medication(
                subject.id, key, "concomitant", "prednisone", Decimal(20), "mg", "oral", "QD", start
            )
        if self.rng.random() < 0.5:
            return Medication(
                subject.id,
                key,
                "concomitant",
                "paracetamol",
                Decimal(500),
                "mg",
                "oral",
                "QD",
                start,
            )
        return Medication(
            subject.id,
            key,
            "study-drug",
            "belimumab",
            Decimal(10),
            "mg/kg",
            "intravenous",
            "Q4W",
            start,
        )


def generate(config: SoakConfig) -> Workload:
    """The whole stream for ``config``: the same seed gives the same stream."""
    rng = random.Random(config.seed)
    subjects = _subjects(config.subject_count, rng)
    builder = _Builder(rng)
    for n, subject in enumerate(subjects):
        builder.add(CHANNELS[n % len(CHANNELS)], subject.id, (Enrolment(subject),))
    enrolments = tuple(builder.items)
    scripted_count = max(len(SCRIPTED_KINDS), round(len(subjects) * config.scripted_share))
    chosen = rng.sample(subjects, min(scripted_count, len(subjects)))
    findings = {s.id: SCRIPTED_KINDS[n % len(SCRIPTED_KINDS)] for n, s in enumerate(chosen)}
    # spread over the stream (visits go round all subjects in turn), so that findings
    # arrive before, during and after the faults
    visits = (config.events - len(subjects)) / (len(subjects) * MEAN_FACTS_PER_VISIT)
    last = max(FIRST_SCRIPTED_VISIT, int(visits * 0.85))
    scripted_visit = {s.id: rng.randint(FIRST_SCRIPTED_VISIT, last) for s in chosen}
    expected: set[Episode] = set()
    triggers: dict[Episode, FactKey] = {}
    facts, messages, visit, poison_n = len(subjects), 0, 0, 0
    while facts < config.events:
        order = list(subjects)
        rng.shuffle(order)
        for subject in order:
            if facts >= config.events:
                break
            scripted = scripted_visit.get(subject.id) == visit
            finding = findings.get(subject.id) if scripted else None
            for item in builder.visit(subject, visit, finding):
                facts += len(item.facts)
                messages += 1
                if finding is not None:
                    _expect(item, finding, expected, triggers)
                if config.poison_kinds and messages % config.poison_every == 0:
                    kind = config.poison_kinds[poison_n % len(config.poison_kinds)]
                    poison_n += 1
                    channel: Channel = (
                        "mllp"
                        if kind.startswith("hl7")
                        else ("fhir" if kind.startswith("fhir") else "json")
                    )
                    builder.add(channel, subject.id, (), poison=kind)
        visit += 1
    return Workload(
        subjects, enrolments, tuple(builder.items[len(enrolments) :]), frozenset(expected), triggers
    )


def _expect(
    item: Item, finding: ScriptedKind, expected: set[Episode], triggers: dict[Episode, FactKey]
) -> None:
    """Note the episodes a scripted item must open, and the fact that opens them."""
    for fact in item.facts:
        opens = (
            (finding == "anaemia" and isinstance(fact, Lab) and fact.analyte is HB)
            or (finding == "liver" and isinstance(fact, Lab) and fact.analyte is ALT)
            or (finding == "sae" and isinstance(fact, AdverseEvent) and fact.serious)
            or (finding == "steroid" and isinstance(fact, Medication) and fact.drug == "prednisone")
        )
        if opens:
            for rule in RULES_FIRED[finding]:
                episode = Episode(item.subject, rule)
                expected.add(episode)
                triggers[episode] = fact_key(fact)
