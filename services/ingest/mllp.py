"""The MLLP listener: HL7 v2 messages in, ACKs out, each message kept verbatim first."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import hl7.mllp
import structlog

from services.ingest.adapters.publisher import BrokerUnavailable
from services.ingest.adapters.receipts import Receipt
from services.ingest.authorization import Refusal
from services.ingest.domain import events_for
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.messages import APPLICATION_ERROR, Hl7Problem, Interpretation, interpret
from services.ingest.intake import Forbidden, Intake, StorageUnavailable
from services.ingest.principals import Principal
from services.ingest.rate_limit import RateLimiter
from services.ingest.sources import SourceRouter
from shared import metrics
from shared.events import Envelope

log = structlog.get_logger(__name__)
SOURCE = "/vigil/ingest/mllp"
CHANNEL = "mllp"
UNAUTHENTICATED = (
    "MLLP senders cannot be authenticated on this server yet, so no HL7 v2 message is "
    "accepted (VIGIL_ENVIRONMENT=production); send over HTTP with an API key, or use "
    "VIGIL_ENVIRONMENT=development for a loopback development source"
)
PrincipalSource = Principal | Callable[[], Principal | None] | None
# The HL7 field each ownership rule's field lives in (segment, field number)
_HL7_FIELD = {"study_id": ("MSH", 4), "site_id": ("PV1", 3), "subject_id": ("PID", 3)}


def refusal_problems(
    refusals: list[Refusal], events: list[Envelope], text: str
) -> list[Hl7Problem]:
    """One ERR per refused event, naming the segment and field the rule is about."""
    by_id = {envelope.id: envelope for envelope in events}
    problems = []
    for refused in refusals:
        segment, number = _HL7_FIELD.get(refused.field, ("MSH", 0))
        sequence = 1
        envelope = by_id.get(refused.event_id)
        if refused.field == "observation_key" and envelope is not None:
            segment, number = "OBX", 3
            sequence = _obx_position(text, str(envelope.data.get("source_message_id", "")))
        problems.append(
            Hl7Problem(
                segment, sequence, number, APPLICATION_ERROR, f"{refused.code}: {refused.problem}"
            )
        )
    return problems


def _obx_position(text: str, source_message_id: str) -> int:
    """The position among OBX segments of the OBX a result came from (its source message
    id ends ``/OBR<n>/OBX<set id>``); 1 when it cannot be told."""
    _, _, tail = source_message_id.rpartition("/OBR")
    obr_text, _, set_id = tail.partition("/OBX")
    obr = obx = 0
    for line in text.replace("\n", "\r").split("\r"):
        name, _, rest = line.partition("|")
        if name == "OBR":
            obr += 1
        elif name == "OBX":
            obx += 1
            own_set_id = rest.split("|", 1)[0] or str(obx)
            if str(obr) == obr_text and own_set_id == set_id:
                return obx
    return 1


class MllpHandler:
    """Serves one connection: every block is stored, interpreted and acknowledged."""

    def __init__(
        self,
        intake: Intake,
        *,
        router: SourceRouter,
        code_maps: Mapping[str, Mapping[str, str]],
        principal: PrincipalSource = None,
        unauthenticated_limiter: RateLimiter | None = None,
    ) -> None:
        """``principal`` is who sends on every connection (a Principal, or a callable
        giving one); None, or a callable giving None: nobody is authenticated, and every
        message is answered AR and kept (at most at ``unauthenticated_limiter``'s rate
        per peer address; beyond it, answered AR and only counted)."""
        self._intake = intake
        self._router = router
        self._code_maps = code_maps
        self._principal = principal
        self._unauthenticated_limiter = unauthenticated_limiter

    def principal(self) -> Principal | None:
        return self._principal() if callable(self._principal) else self._principal

    async def __call__(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        source = f"mllp {peer[0]}:{peer[1]}" if peer else "mllp"
        try:
            while not reader.at_eof():
                try:
                    block: bytes = await reader.readblock()
                except hl7.mllp.InvalidBlockError as error:
                    log.warning("mllp.invalid_block", peer=source, error=str(error))
                    continue
                except asyncio.IncompleteReadError:
                    break
                ack = await self.handle(block, source)
                writer.writeblock(ack.encode())
                await writer.drain()
        except (ConnectionError, OSError) as error:
            log.info("mllp.connection_closed", peer=source, error=str(error))
        finally:
            writer.close()

    async def handle(self, block: bytes, source: str) -> str:
        """Store, interpret, publish, and answer; AA only once the broker acknowledged."""
        text = block.decode("utf-8", errors="replace")
        study, zone = self._router.default
        outcome = interpret(
            text, study_id=study, zone=zone, route=self._router.route, code_maps=self._code_maps
        )
        principal = self.principal()
        if principal is None:
            outcome.ack_code, outcome.events = "AR", []
            outcome.problems = [Hl7Problem("MSH", 1, 0, APPLICATION_ERROR, UNAUTHENTICATED)]
        receipt = Receipt(
            channel=CHANNEL,
            source=source,
            content_type="x-application/hl7-v2+er7",
            raw=block,
            outcome="accepted" if outcome.ack_code == "AA" else "rejected",
            reason=None if outcome.ack_code == "AA" else outcome.reason,
        )
        correlation = uuid.uuid4()
        with structlog.contextvars.bound_contextvars(correlation_id=str(correlation)):
            await self._store(outcome, receipt, correlation, source, principal, text)
        return build_ack(
            outcome,
            sending_application="VIGIL",
            sending_facility="VIGIL",
            receiving_application=outcome.sender[0],
            receiving_facility=outcome.sender[1],
            ack_control_id=f"ACK{uuid.uuid4().hex[:16].upper()}",
            now=datetime.now(UTC),
        )

    async def _store(
        self,
        outcome: Interpretation,
        receipt: Receipt,
        correlation: uuid.UUID,
        source: str,
        principal: Principal | None,
        text: str,
    ) -> None:
        """Accept or reject the message durably; a storage or broker failure turns the
        answer into AE (the sender sends again), a refusal by the object-level rules into
        AR naming the segment and field (the message is kept)."""
        if principal is None:
            await self._reject_unauthenticated(receipt, source)
            return
        envelopes: list[Envelope] = []
        try:
            if outcome.ack_code == "AA":
                envelopes = [
                    envelope
                    for event in outcome.events
                    for envelope in events_for(
                        event, source=SOURCE, correlation_id=correlation, now=None
                    )
                ]
                await self._intake.accept(receipt, envelopes, principal=principal, origin=source)
                log.info(
                    "ingest.accepted",
                    channel=CHANNEL,
                    control_id=outcome.control_id,
                    events=len(envelopes),
                )
            else:
                reason = outcome.problems[0].code if outcome.problems else outcome.ack_code
                await self._intake.reject(
                    receipt, origin=source, reason_code=f"hl7-{reason}", principal=principal
                )
                log.warning("mllp.rejected", control_id=outcome.control_id, reason=outcome.reason)
        except Forbidden as forbidden:  # kept as a rejected receipt by Intake
            outcome.ack_code = "AR"
            outcome.problems = refusal_problems(forbidden.refusals, envelopes, text)
        except (StorageUnavailable, BrokerUnavailable) as error:
            outcome.ack_code = "AE"
            outcome.problems = [
                Hl7Problem("MSH", 1, 0, APPLICATION_ERROR, f"temporarily unavailable: {error}")
            ]

    async def _reject_unauthenticated(self, receipt: Receipt, source: str) -> None:
        limiter = self._unauthenticated_limiter
        peer = source.removeprefix("mllp ").rpartition(":")[0] or source
        if limiter is not None and limiter.try_acquire(f"mllp {peer}") is not None:
            metrics.record_ingest_rejected(CHANNEL, "rate-limited-unauthenticated")
            return  # answered AR; not kept, or junk could fill the receipt store
        rejected = Receipt(
            channel=receipt.channel,
            source=receipt.source,
            content_type=receipt.content_type,
            raw=receipt.raw,
            outcome="rejected",
            reason=UNAUTHENTICATED,
        )
        with contextlib.suppress(StorageUnavailable, BrokerUnavailable):
            await self._intake.reject(rejected, origin=source, reason_code="mllp-unauthenticated")
        log.warning("mllp.unauthenticated", peer=source)


async def start_mllp_server(
    intake: Intake,
    *,
    host: str,
    port: int,
    router: SourceRouter,
    code_maps: Mapping[str, Mapping[str, str]],
    principal: PrincipalSource = None,
    unauthenticated_limiter: RateLimiter | None = None,
) -> asyncio.Server:
    handler = MllpHandler(
        intake,
        router=router,
        code_maps=code_maps,
        principal=principal,
        unauthenticated_limiter=unauthenticated_limiter,
    )
    server: asyncio.Server = await hl7.mllp.start_hl7_server(handler, host=host, port=port)
    return server
