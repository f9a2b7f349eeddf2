"""One MLLP message in, one ACK out: every message is answered (AA, AE or AR) and kept.

The order of checks is the order of trust: a frame that is not a whole message (too
large, unfinished, unframed), a connection that stands for no source, a block that holds
more than one message (a batch is split, and each of its messages goes through these
checks alone; anything else is refused), a message whose MSH-3/MSH-4 is not an identity
of the connection's source, a source over its rate limit, and only then the content.
Whatever is refused is kept as a rejected receipt with its reason and counted; whatever
fails unexpectedly (an event that cannot be built) becomes AE with the message kept. Only
a lost connection ends without an answer. Log lines carry the peer, the control id and a
reason code, never a field's value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog

from services.ingest.domain.hl7.batch import Batch, batch_ack, read_block
from services.ingest.domain.hl7.charset import Decoded, decode
from services.ingest.domain.hl7.header import Hl7Header, read_header
from services.ingest.domain.hl7.messages import (
    TABLE_VALUE_NOT_FOUND,
    Hl7Problem,
    Interpretation,
    interpret,
)
from services.ingest.domain.hl7.outcome import SEGMENT_SEQUENCE_ERROR
from services.ingest.domain.hl7.refusals import refusal_problems
from services.ingest.domain.json_events import events_for
from services.ingest.domain.plausible_times import DEFAULT_CLOCK_SKEW
from services.ingest.domain.rate_limit import RateLimiter
from services.ingest.domain.subject_identifiers import SubjectIdentifiers
from services.ingest.entrypoints.mllp_answers import encode_ack, outcome_of
from services.ingest.entrypoints.mllp_auth import Authenticated, Refused, Sender
from services.ingest.entrypoints.mllp_frames import Frame
from services.ingest.entrypoints.mllp_refusals import (
    Refusal,
    charset_refusal,
    failure_text,
    frame_problem,
    msh_problem,
)
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import BrokerUnavailable, Receipt, StorageUnavailable
from shared.clock import Clock
from shared.events import Envelope

log = structlog.get_logger(__name__)
SOURCE = "/vigil/ingest/mllp"
CHANNEL = "mllp"
CONTENT_TYPE = "x-application/hl7-v2+er7"


@dataclass(frozen=True)
class Peer:
    """One connection as the handler sees it."""

    label: str
    """``host:port``, for log lines and the receipt's source."""
    host: str
    auth: Authenticated | Refused


@dataclass(frozen=True)
class Answer:
    ack: bytes
    close: bool = False
    """Close the connection after sending: the stream is out of step, or nobody speaks."""


class MllpHandler:
    """Answers and keeps every frame of every connection."""

    def __init__(
        self,
        intake: Intake,
        *,
        code_maps: Mapping[str, Mapping[str, str]],
        limiter: RateLimiter,
        max_bytes: int,
        identifiers: SubjectIdentifiers | None = None,
        processing_ids: frozenset[str] = frozenset({"P"}),
        clock: Clock,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        self._clock, self._clock_skew = clock, clock_skew
        self._intake = intake
        self._processing_ids = processing_ids
        self._code_maps = code_maps
        self._limiter = limiter
        self._max_bytes = max_bytes
        self._identifiers = identifiers or SubjectIdentifiers()

    async def handle(self, frame: Frame, peer: Peer) -> Answer:
        """The ACK for ``frame``; raises nothing but a cancellation."""
        header: Hl7Header | None = None
        decoded = Decoded(None, "", "utf-8")
        correlation = uuid.uuid4()
        context = {"peer": peer.label, "correlation_id": str(correlation)}
        with structlog.contextvars.bound_contextvars(**context):
            try:
                decoded = decode(frame.content)
                header = read_header(decoded.header)
                return await self._handle(frame, peer, header, decoded, correlation)
            except Exception as error:  # the last resort: answer and keep, whatever broke
                return await self._failed(frame, peer, header, error, decoded.charset)

    async def _handle(
        self,
        frame: Frame,
        peer: Peer,
        header: Hl7Header | None,
        decoded: Decoded,
        correlation: uuid.UUID,
    ) -> Answer:
        gate = self._gate(frame, peer, header, decoded)
        if isinstance(gate, Batch):
            return await self._batch(peer, gate)
        if isinstance(gate, Sender) and decoded.text is None:
            gate = charset_refusal(decoded, gate.principal)
        if isinstance(gate, Sender):
            return await self._interpret(frame, peer, gate, decoded, correlation)
        if isinstance(peer.auth, Refused) and self._limiter.try_acquire(f"peer:{peer.host}"):
            # answered but not kept: an unauthenticated peer must not fill the store
            log.warning("mllp.refused_over_rate", reason_code=gate.reason_code)
            outcome = outcome_of(gate.code, header, [gate.problem], decoded.charset)
            return Answer(encode_ack(outcome, self._clock.now()), close=True)
        return await self._refuse(frame, peer, header, gate, decoded.charset)

    def _gate(
        self, frame: Frame, peer: Peer, header: Hl7Header | None, decoded: Decoded
    ) -> Refusal | Sender | Batch:
        """Whom the message speaks for, why it is refused before its content is read, or
        the batch it is."""
        auth = peer.auth
        if frame.problem is not None:
            principal = auth.only_principal() if isinstance(auth, Authenticated) else None
            problem = frame_problem(frame, self._max_bytes)
            reason = f"mllp-{frame.problem}"
            close = frame.ends_stream or isinstance(auth, Refused)
            return Refusal("AR", problem, reason, principal, close=close)
        if isinstance(auth, Refused):
            return Refusal("AR", msh_problem(auth.text), auth.reason_code, close=True)
        # a batch is split; a second message whose MSH-3/MSH-4 would never be checked, or
        # a batch that cannot be read whole, is refused
        block = read_block(frame.content, decoded.text or decoded.header)
        if isinstance(block, Batch):
            return block
        if block is not None:
            return Refusal("AR", block.problem, block.reason_code, auth.only_principal())
        if header is None:
            text = "not an HL7 v2 message: it does not begin with an MSH segment"
            reason = f"hl7-{SEGMENT_SEQUENCE_ERROR}"
            problem = msh_problem(text, code=SEGMENT_SEQUENCE_ERROR)
            return Refusal("AR", problem, reason, auth.only_principal())
        sender = auth.sender_for(header.application, header.facility)
        if sender is None:
            text = f"MSH-4/MSH-3 is not an identity of the authenticated source ({auth.label})"
            problem = msh_problem(text, field=4, code=TABLE_VALUE_NOT_FOUND)
            return Refusal("AR", problem, "mllp-identity-mismatch", auth.only_principal())
        if wait := self._limiter.try_acquire(sender.principal.source):
            text = (
                f"rate limit of source {sender.principal.source} exceeded: try again in "
                f"{wait:.0f} s"
            )
            return Refusal("AE", msh_problem(text), "mllp-rate-limited", sender.principal)
        return sender

    async def _batch(self, peer: Peer, batch: Batch) -> Answer:
        """Each message of a batch read, authenticated, kept and answered as if it came in
        a block of its own; the answer, their ACKs as a batch, once every one is kept."""
        answers = [await self.handle(Frame(m, len(m)), peer) for m in batch.messages]
        log.info("mllp.batch", messages=len(answers))
        ack = batch_ack(
            batch,
            [answer.ack for answer in answers],
            control_id=f"ACK{uuid.uuid4().hex[:16].upper()}",
            now=self._clock.now(),
        )
        return Answer(ack, close=any(answer.close for answer in answers))

    async def _interpret(
        self, frame: Frame, peer: Peer, sender: Sender, decoded: Decoded, correlation: uuid.UUID
    ) -> Answer:
        """The content: events accepted (AA only once stored and published), or the
        problems it has (AE/AR)."""
        principal = sender.principal
        text = decoded.text or ""
        outcome = interpret(
            text,
            study_id=sender.study_id,
            zone=sender.zone,
            code_maps=self._code_maps,
            identifiers=self._identifiers,
            processing_ids=self._processing_ids,
            now=self._clock.now(),
            clock_skew=self._clock_skew,
        )
        outcome.charset = decoded.charset
        # an AA may carry warnings (results kept unreadable): the receipt says which
        receipt = self._receipt(
            frame, peer, outcome.reason or None, accepted=outcome.ack_code == "AA"
        )
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
                await self._intake.accept(receipt, envelopes, principal=principal)
                log.info(
                    "ingest.accepted",
                    channel=CHANNEL,
                    control_id=outcome.control_id,
                    source=principal.source,
                    events=len(envelopes),
                    # results kept unreadable: where and which code, never the text
                    unreadable=[
                        f"{p.segment}[{p.sequence}]-{p.field}:{p.code}" for p in outcome.problems
                    ],
                )
            else:
                reason = f"hl7-{outcome.problems[0].code}" if outcome.problems else "hl7"
                await self._intake.reject(
                    receipt, origin=receipt.source, reason_code=reason, principal=principal
                )
                self._log_rejected(outcome.control_id, reason, outcome.problems)
        except Forbidden as forbidden:  # kept as a rejected receipt by Intake
            outcome.ack_code = "AR"
            outcome.problems = refusal_problems(forbidden.refusals, envelopes, text)
        except (StorageUnavailable, BrokerUnavailable):
            return Answer(self._unavailable(outcome))
        return Answer(encode_ack(outcome, self._clock.now()))

    async def _refuse(
        self,
        frame: Frame,
        peer: Peer,
        header: Hl7Header | None,
        refusal: Refusal,
        charset: str = "",
    ) -> Answer:
        """Keep the message as rejected with the refusal's problem as its reason, then
        answer."""
        outcome = outcome_of(refusal.code, header, [refusal.problem], charset)
        try:
            await self._intake.reject(
                self._receipt(frame, peer, refusal.problem.text),
                origin=f"mllp {peer.label}",
                reason_code=refusal.reason_code,
                principal=refusal.principal,
            )
        except (StorageUnavailable, BrokerUnavailable):
            return Answer(self._unavailable(outcome), close=refusal.close)
        self._log_rejected(outcome.control_id, refusal.reason_code, [refusal.problem])
        return Answer(encode_ack(outcome, self._clock.now()), close=refusal.close)

    async def _failed(
        self, frame: Frame, peer: Peer, header: Hl7Header | None, error: Exception, charset: str
    ) -> Answer:
        """Something unexpected broke: AE, the message kept for review, a log line."""
        text = failure_text(error)
        log.error(
            "mllp.failed",
            control_id=header.control_id if header else "",
            reason_code="mllp-internal-error",
            error=text,
        )
        principal = peer.auth.only_principal() if isinstance(peer.auth, Authenticated) else None
        problem = msh_problem(f"{text}; it is kept for review")
        refusal = Refusal("AE", problem, "mllp-internal-error", principal)
        try:
            return await self._refuse(frame, peer, header, refusal, charset)
        except Exception as again:  # storage itself broke: still answer
            log.error("mllp.not_kept", error=type(again).__name__)
            return Answer(self._unavailable(outcome_of("AE", header, [problem], charset)))

    def _receipt(
        self, frame: Frame, peer: Peer, reason: str | None, *, accepted: bool = False
    ) -> Receipt:
        return Receipt(
            channel=CHANNEL,
            source=f"mllp {peer.label}",
            content_type=CONTENT_TYPE,
            raw=frame.content,
            outcome="accepted" if accepted else "rejected",
            reason=reason,
        )

    @staticmethod
    def _log_rejected(control_id: str, reason_code: str, problems: list[Hl7Problem]) -> None:
        # where and which code, never the problem's text: it may quote a field's value
        where = [f"{p.segment}[{p.sequence}]-{p.field}:{p.code}" for p in problems]
        log.warning("mllp.rejected", control_id=control_id, reason_code=reason_code, at=where)

    def _unavailable(self, outcome: Interpretation) -> bytes:
        """AE: the database or the broker did not answer, nothing was claimed; send again."""
        outcome.ack_code = "AE"
        outcome.problems = [msh_problem("temporarily unavailable: send again later")]
        log.warning("mllp.unavailable", control_id=outcome.control_id, reason_code="unavailable")
        return encode_ack(outcome, self._clock.now())
