"""The ORU^R01 message structure (HL7 v2.5.1 chapter 7, 7.3.1) as a tree of groups (pure).

python-hl7 gives a message's segments but not its groups; this module places each
segment in the group the standard gives it::

    MSH [SFT]
    { PATIENT_RESULT
        [ PATIENT  PID [PD1] [{NTE}] [{NK1}] [ VISIT PV1 [PV2] ] ]
        { ORDER_OBSERVATION
            [ORC] OBR [{NTE}] [{TQ1 [{TQ2}]}] [CTD]
            [{ OBSERVATION  OBX [{NTE}] }]
            [{FT1}] [{CTI}] [{ SPECIMEN  SPM [{OBX}] }]
        }
    } [DSC]

A PID opens a PATIENT_RESULT, an ORC (or an OBR not preceded by its own ORC) opens an
ORDER_OBSERVATION, an OBX opens an OBSERVATION (or, after an SPM, is one of the
specimen's). Versions 2.3 to 2.5 have the same shape for what Vigil reads. Segments the
structure does not name (Z segments, or ones of later versions) are skipped, as chapter
2's rules for a receiver say; NTE and the other optional segments are placed and not
read. What cannot be placed (an OBX outside an order, an order before any PID) is a
problem of the whole message: its results have no patient or order to be filed under.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hl7


@dataclass(frozen=True)
class Located:
    """A segment and its position among the message's segments of the same name (1-based),
    the position an ERR segment gives."""

    segment: hl7.Segment
    sequence: int


@dataclass
class Order:
    """One ORDER_OBSERVATION: its OBR and its OBX segments, each kept in place."""

    obr: Located | None = None
    orc: Located | None = None
    observations: list[Located] = field(default_factory=list)
    in_specimen: bool = False  # after an SPM, OBX segments belong to the specimen
    specimen: Located | None = None  # the order's first SPM


@dataclass
class PatientResult:
    """One PATIENT_RESULT: its PID (None when the group has no PATIENT) and its orders."""

    pid: Located | None
    orders: list[Order] = field(default_factory=list)


@dataclass(frozen=True)
class Misplaced:
    """A segment that has no place in the structure where it stands."""

    name: str
    sequence: int
    problem: str


@dataclass
class OruR01:
    patient_results: list[PatientResult] = field(default_factory=list)
    misplaced: list[Misplaced] = field(default_factory=list)

    @property
    def observation_count(self) -> int:
        return sum(len(o.observations) for g in self.patient_results for o in g.orders)


def numbered(message: hl7.Message) -> list[tuple[str, Located]]:
    """Each segment with its name and its position among segments of that name."""
    seen: dict[str, int] = {}
    out = []
    for segment in message:
        name = str(segment[0]).strip().upper()
        seen[name] = seen.get(name, 0) + 1
        out.append((name, Located(segment, seen[name])))
    return out


class _Builder:
    def __init__(self) -> None:
        self.tree = OruR01()
        self.group: PatientResult | None = None
        self.order: Order | None = None

    def pid(self, at: Located) -> None:
        self.group, self.order = PatientResult(at), None
        self.tree.patient_results.append(self.group)

    def patient_group(self, name: str, at: Located) -> PatientResult:
        if self.group is None:  # the standard's PATIENT is optional; Vigil needs it
            self.tree.misplaced.append(
                Misplaced(
                    name,
                    at.sequence,
                    f"an {name} comes before any PID: each patient's results follow its PID",
                )
            )
            self.group = PatientResult(None)
            self.tree.patient_results.append(self.group)
        return self.group

    def orc(self, at: Located) -> None:
        group = self.patient_group("ORC", at)
        self.order = Order(orc=at)
        group.orders.append(self.order)

    def obr(self, at: Located) -> None:
        group = self.patient_group("OBR", at)
        if self.order is not None and self.order.obr is None and not self.order.observations:
            self.order.obr = at  # the OBR of the ORC just before it
            return
        self.order = Order(obr=at)
        group.orders.append(self.order)

    def obx(self, at: Located) -> None:
        if self.order is None or self.order.obr is None:
            where = "any OBR of its patient's group" if self.group else "any PID"
            self.tree.misplaced.append(
                Misplaced(
                    "OBX",
                    at.sequence,
                    f"an OBX comes before {where}: each result follows its patient's PID "
                    "and its OBR",
                )
            )
            return
        self.order.observations.append(at)

    def spm(self, at: Located) -> None:
        if self.order is not None:
            self.order.in_specimen = True
            self.order.specimen = self.order.specimen or at


def oru_r01(message: hl7.Message) -> OruR01:
    """The PATIENT_RESULT groups of an ORU^R01, each OBX in its order, in message order.

    OBX segments of a SPECIMEN group (after an SPM) are kept with the order's results:
    they are observations of the same order, and Vigil drops no observation unread."""
    builder = _Builder()
    for name, at in numbered(message):
        if name == "PID":
            builder.pid(at)
        elif name == "ORC":
            builder.orc(at)
        elif name == "OBR":
            builder.obr(at)
        elif name == "OBX":
            builder.obx(at)
        elif name == "SPM":
            builder.spm(at)
        # MSH, SFT, PD1, NTE, NK1, PV1, PV2, TQ1, TQ2, CTD, FT1, CTI, DSC and Z segments
        # have their places and carry nothing Vigil reads from an ORU
    return builder.tree
