"""The pure parts of replaying the samples that ship in HL7 and FHIR packages
(``tests/data/packages``): how a sample is made to name a study subject, and how an
answer is compared with what ``expected.yaml`` says a conformant receiver gives."""

from __future__ import annotations

import copy
import re
from typing import Any

import hl7

from tests.support.results import new_subject_id

STUDY = "NCT05262686"
SYSTEM = f"urn:vigil:study:{STUDY}"
SEGMENT_END = re.compile(r"(\r\n|\r|\n)")
IN_BUNDLE = re.compile(r"^Bundle\.entry\[\d+\]\.resource\.")


# --- how a replay names its subjects --------------------------------------------------


def as_study_laboratory(raw: bytes, subjects: dict[str, str]) -> bytes:
    """The sample as the study's laboratory sends it: its MSH-3/MSH-4, its MSH-11 P (two
    samples are training messages, T, which a production receiver rightly refuses:
    VIGIL_MLLP_PROCESSING_IDS), and each PID-3 with the study's identifier of a new
    subject (``subjects``: "PID n" -> id)."""
    text = raw.decode("ascii")
    field, component, repetition = text[3], text[4], text[5]
    parts = SEGMENT_END.split(text)
    pids = 0
    for index, segment in enumerate(parts):
        fields = segment.split(field)
        if fields[0] == "MSH":
            fields[2:4] = ["LIS", "PKUPH-LAB"]
            if len(fields) > 10:
                fields[10] = "P"
        elif fields[0] == "PID":
            pids += 1
            fields += [""] * (4 - len(fields))
            subject = subjects.setdefault(f"PID {pids}", new_subject_id("PKG"))
            ours = component.join([subject, "", "", STUDY, "SS"])
            fields[3] = f"{fields[3]}{repetition}{ours}" if fields[3] else ours
        else:
            continue
        parts[index] = field.join(fields)
    return "".join(parts).encode("ascii")


def name_subject(observation: dict[str, Any], subjects: dict[str, str]) -> None:
    reference = (observation.get("subject") or {}).get("reference", "")
    if reference.startswith("#"):
        for contained in observation.get("contained", []):
            if contained.get("resourceType") == "Patient" and f"#{contained['id']}" == reference:
                subject = subjects.setdefault(reference, new_subject_id("PKG"))
                contained.setdefault("identifier", []).append({"system": SYSTEM, "value": subject})
    elif reference.startswith("Patient/"):
        subject = subjects.setdefault(reference, new_subject_id("PKG"))
        observation["subject"]["identifier"] = {"system": SYSTEM, "value": subject}


def as_study_sender(sample: dict[str, Any], subjects: dict[str, str]) -> dict[str, Any]:
    body = copy.deepcopy(sample)
    if body["resourceType"] != "Bundle":
        name_subject(body, subjects)
        return body
    if body["type"] == "collection":
        body["type"] = "batch"
        for entry in body["entry"]:
            entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    for entry in body["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            name_subject(entry["resource"], subjects)
    return body


# --- comparing answers with expected.yaml ----------------------------------------


def misses(found: dict[str, int], wanted: dict[str, int]) -> list[str]:
    """What ``found`` (reported, unreadable) lacks of ``wanted``; empty when it fits."""
    have = {**found, "results": found["reported"] + found["unreadable"]}
    wrong = []
    for key, number in wanted.items():
        name = key.removesuffix("_at_least")
        fits = have[name] >= number if name != key else have[name] == number
        if not fits:
            wrong.append(f"{key} {number}, found {have[name]}")
    return wrong


def errors_of(ack: hl7.Message) -> list[tuple[str, str, str]]:
    """Each ERR as (segment^occurrence, severity, table 0357 code)."""
    try:
        segments = ack.segments("ERR")
    except KeyError:
        return []
    found = []
    for segment in segments:
        location = str(segment[2]).split("^")
        code = str(segment[3]).split("^")[0] if len(segment) > 3 else ""
        severity = str(segment[4]) if len(segment) > 4 else ""
        found.append(("^".join(location[:2]), severity, code))
    return found


def check_errors(found: list[tuple[str, str, str]], expected: dict[str, Any]) -> None:
    rest = list(found)
    for wanted in expected.get("errors", []):
        codes = {str(code) for code in wanted["code"]}
        match = next(
            (e for e in rest if e[0] == wanted["where"] and e[1] == wanted["severity"]
             and e[2] in codes),
            None,
        )  # fmt: skip
        assert match is not None, f"no ERR {wanted} among {found}"
        rest.remove(match)
    allowed = set(expected.get("other_errors", []))
    assert all(e[1] in allowed for e in rest), f"ERR segments not expected: {rest}"


def status_fits(status: str, wanted: int | str | list[int] | None) -> bool:
    code = status.split()[0] if status else ""
    if wanted is None:
        return True
    if isinstance(wanted, list):
        return code in {str(w) for w in wanted}
    return code.startswith(str(wanted).rstrip("x"))


def problems(outcome: dict[str, Any]) -> list[str]:
    """An OperationOutcome's issues as 'expression: diagnostics' (never values)."""
    return [
        f"{','.join(issue.get('expression', []))}: {issue.get('diagnostics', '')}"
        for issue in outcome.get("issue", [])
    ]


def check_refusal(outcome: dict[str, Any], expected: dict[str, Any]) -> None:
    """A 422 the sample may get must name only the elements ``refusable_at`` lists (an
    entry's path inside the Bundle left out)."""
    allowed = tuple(expected.get("refusable_at", []))
    named = {
        IN_BUNDLE.sub("", element)
        for issue in outcome.get("issue", [])
        for element in issue.get("expression", [])
    }
    assert named, f"a refusal that names no element: {problems(outcome)}"
    assert all(e.startswith(allowed) for e in named), (
        f"refused for {problems(outcome)}, may be only for {list(allowed)}"
    )


def taken_per_subject(
    body: dict[str, Any], answers: list[dict[str, Any]], subjects: dict[str, str]
) -> dict[str, dict[str, int]]:
    """Each subject's count of Observation entries the answer says were taken (201):
    each must be a stored result, whatever the entries refused beside it."""
    taken = dict.fromkeys(subjects, 0)
    for answer, entry in zip(answers, body["entry"], strict=True):
        resource = entry["resource"]
        reference = (resource.get("subject") or {}).get("reference", "")
        taken_here = resource["resourceType"] == "Observation" and answer["status"][:3] == "201"
        if taken_here and reference in taken:
            taken[reference] += 1
    return {alias: {"results_at_least": n} for alias, n in taken.items() if n}


# --- what an answer must never show ---------------------------------------------------

# what issue 14 found in answers: a validation library's location and internal errors, a
# regular expression
INTERNAL = re.compile(r"\(body\)|Traceback|out of range|\\[dsw]|\[0-9|\[A-Z|\^\[|\{\d")


def pid_values(raw: bytes) -> set[str]:
    """Every value of the sample's PID segments (names, MRNs, birth dates, addresses) of
    four characters or more: none may come back in an answer."""
    text = raw.decode("ascii")
    delimiters = re.compile("|".join(map(re.escape, text[3:8])))  # field and encoding chars
    return {
        value.strip()
        for segment in SEGMENT_END.split(text)
        if segment.startswith(f"PID{text[3]}")
        for value in delimiters.split(segment[4:])
        if len(value.strip()) >= 4
    }


def patient_values(sample: dict[str, Any]) -> set[str]:
    """The patient's words in a FHIR sample (subject display, a contained Patient's names,
    identifiers and birth date) of four characters or more."""
    found: set[str] = set()

    def walk(node: Any, inside_patient: bool) -> None:
        if isinstance(node, dict):
            patient = inside_patient or node.get("resourceType") == "Patient"
            for key, value in node.items():
                if key == "subject" and isinstance(value, dict) and "display" in value:
                    found.add(value["display"])
                if patient and key in ("name", "identifier", "birthDate", "telecom", "address"):
                    walk_strings(value)
                walk(value, patient)
        elif isinstance(node, list):
            for item in node:
                walk(item, inside_patient)

    def walk_strings(node: Any) -> None:
        if isinstance(node, str) and len(node) >= 4 and not node.startswith("http"):
            found.add(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk_strings(value)
        elif isinstance(node, list):
            for item in node:
                walk_strings(item)

    walk(sample, False)
    return found


def leaks(answer: str, patient: set[str]) -> list[str]:
    """What an answer shows that it must not: a patient's words, an internal text."""
    shown = sorted(value for value in patient if value in answer)
    return shown + INTERNAL.findall(answer)
