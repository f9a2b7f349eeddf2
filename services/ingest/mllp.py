"""The MLLP listener: HL7 v2 messages in, ACKs out, each message kept verbatim first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import hl7.mllp
import structlog

from services.ingest.adapters.publisher import BrokerUnavailable
from services.ingest.adapters.receipts import Receipt
from services.ingest.domain import events_for
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.messages import APPLICATION_ERROR, Hl7Problem, Interpretation, interpret
from services.ingest.intake import Intake, StorageUnavailable
from services.ingest.sources import SourceRouter
from services.ingest.subject_identifiers import SubjectIdentifiers

log = structlog.get_logger(__name__)
SOURCE = "/vigil/ingest/mllp"
CHANNEL = "mllp"


class MllpHandler:
    """Serves one connection: every block is stored, interpreted and acknowledged."""

    def __init__(
        self,
        intake: Intake,
        *,
        router: SourceRouter,
        code_maps: Mapping[str, Mapping[str, str]],
        identifiers: SubjectIdentifiers | None = None,
    ) -> None:
        self._intake = intake
        self._router = router
        self._code_maps = code_maps
        self._identifiers = identifiers or SubjectIdentifiers()

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
            text,
            study_id=study,
            zone=zone,
            route=self._router.route,
            code_maps=self._code_maps,
            identifiers=self._identifiers,
        )
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
            await self._store(outcome, receipt, correlation, source)
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
        self, outcome: Interpretation, receipt: Receipt, correlation: uuid.UUID, source: str
    ) -> None:
        """Accept or reject the message durably; a storage or broker failure turns the
        answer into AE (the sender sends again)."""
        try:
            if outcome.ack_code == "AA":
                envelopes = [
                    envelope
                    for event in outcome.events
                    for envelope in events_for(
                        event, source=SOURCE, correlation_id=correlation, now=None
                    )
                ]
                await self._intake.accept(receipt, envelopes)
                log.info(
                    "ingest.accepted",
                    channel=CHANNEL,
                    control_id=outcome.control_id,
                    events=len(envelopes),
                )
            else:
                reason = outcome.problems[0].code if outcome.problems else outcome.ack_code
                await self._intake.reject(receipt, origin=source, reason_code=f"hl7-{reason}")
                log.warning("mllp.rejected", control_id=outcome.control_id, reason=outcome.reason)
        except (StorageUnavailable, BrokerUnavailable) as error:
            outcome.ack_code = "AE"
            outcome.problems = [
                Hl7Problem("MSH", 1, 0, APPLICATION_ERROR, f"temporarily unavailable: {error}")
            ]


async def start_mllp_server(
    intake: Intake,
    *,
    host: str,
    port: int,
    router: SourceRouter,
    code_maps: Mapping[str, Mapping[str, str]],
    identifiers: SubjectIdentifiers | None = None,
) -> asyncio.Server:
    handler = MllpHandler(intake, router=router, code_maps=code_maps, identifiers=identifiers)
    server: asyncio.Server = await hl7.mllp.start_hl7_server(handler, host=host, port=port)
    return server
