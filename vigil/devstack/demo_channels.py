"""The demo's results sent as a laboratory would over HL7 v2 (MLLP) and FHIR R4.

Both carry the study's subject id the way NCT05262686 configures it (``sources.yaml``,
``subject_identifier``): in HL7 the PID-3 repetition whose assigning authority is the
study (after the hospital's MRN, which Vigil never takes as a subject id), in FHIR an
identifier with the system ``urn:vigil:study:NCT05262686``.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from typing import Any

STUDY = "NCT05262686"
HL7_AUTHORITY = STUDY
FHIR_SYSTEM = f"urn:vigil:study:{STUDY}"
_START, _END = b"\x0b", b"\x1c\r"


def hl7_haemoglobin(
    subject_id: str, value: str, unit: str, low: str, high: str, collected: datetime, control: str
) -> str:
    """An ORU^R01 from the hospital laboratory (MSH-4 PKUPH-LAB, listed in sources.yaml)."""
    stamp = collected.strftime("%Y%m%d%H%M%S%z")
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|{stamp}||ORU^R01^ORU_R01|{control}|P|2.5.1",
            # the hospital's MRN first: Vigil takes only the study's identifier
            f"PID|1||H{control[-6:]}^^^PKUPH^MR~{subject_id}^^^{HL7_AUTHORITY}^SS",
            f"OBR|1|{control}|{control}|58410-2^CBC^LN|||{stamp}",
            f"OBX|1|NM|718-7^Hemoglobin^LN||{value}|{unit}|{low}-{high}|L|||F|||{stamp}",
        ]
    )


def send_mllp(host: str, port: int, message: str, *, timeout: float = 30.0) -> str:
    """Send one HL7 v2 message over MLLP and return the ACK's MSA-1 (AA, AE or AR)."""
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(_START + message.encode() + _END)
        answer = b""
        deadline = time.monotonic() + timeout
        while not answer.endswith(_END) and time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    segments = answer.strip(_START + _END).decode(errors="replace").split("\r")
    msa = next((s for s in segments if s.startswith("MSA|")), "MSA|")
    return msa.split("|")[1] if "|" in msa else ""


def fhir_haemoglobin(
    subject_id: str, value: str, unit: str, low: str, high: str, collected: datetime, key: str
) -> dict[str, Any]:
    """An Observation naming its subject by the study's identifier system."""
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:vigil:demo:observation", "value": key}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"identifier": {"system": FHIR_SYSTEM, "value": subject_id}},
        "effectiveDateTime": collected.isoformat(),
        "valueQuantity": {
            "value": float(value),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        "referenceRange": [{"low": {"value": float(low)}, "high": {"value": float(high)}}],
    }
