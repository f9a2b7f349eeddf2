"""Workspace page: the signed assessment of a signal (21 CFR 11.50, 11.70, 11.100, 11.200).

``GET /workspace/signals/{signal_id}/assess`` shows the signal's facts, the signatures it
carries (printed name, date and time in the site's zone, meaning) and, for a person who
may acknowledge it, the form: the meaning, an optional comment, and the signer's password
(and one-time code when enrolled) entered again. ``POST`` checks the form's CSRF token and
every field (each sent once; a comment the audit log can keep), then confirms the signer
through the authenticator, and records the signature (``handlers.sign``), which is the
signal's acknowledgement: escalation stops. A recorded signature answers ``303`` to the
signal page (POST/redirect/GET: reloading it never sends the password again).

A signal outside the person's scope, or that they may not acknowledge, is a 404 like one
that does not exist. A closed signal (resolved, retracted) cannot be signed, and the page
says why; a wrong password or code is a 422 naming the field, and records nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from services.notifier import handlers
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.escalation import NotificationState, fold
from services.notifier.domain.signature import MEANINGS
from services.notifier.domain.site_time import local_time
from services.notifier.entrypoints.workspace.common import (
    MAX_FORM_BYTES,
    PREFIX,
    Session,
    SignatureRefused,
    WorkspaceDeps,
    not_found,
    render,
)
from shared.events.notifications import Assessment, AssessmentSigned, SignerConfirmation
from shared.events.values import unstorable_text

PAGE = "assessment"
MAX_COMMENT = 4000
MAX_PASSWORD = 1024
MAX_CODE = 16
_FIELDS = ("csrf", "meaning", "comment", "password", "code")


@dataclass(frozen=True)
class Manifestation:
    """A signature as a reader sees it (11.50): who, when (site time, zone named), what
    it means; ``stands`` False when the signal reopened after it."""

    printed_name: str
    person_id: str
    role: str
    signed_at: str
    meaning: str
    comment: str
    confirmed_by: str
    facts_digest: str
    stands: bool


def manifestations(
    signatures: list[tuple[AssessmentSigned, bool]], zone: ZoneInfo
) -> list[Manifestation]:
    """The manifestations of a signal's signatures, oldest first (for this page and the
    signal page: ``templates/workspace/_signatures.html`` shows them)."""
    return [
        Manifestation(
            printed_name=s.printed_name,
            person_id=s.person_id,
            role=s.role.replace("_", " "),
            signed_at=local_time(s.signed_at, zone),
            meaning=MEANINGS[s.meaning],
            comment=s.comment,
            confirmed_by=s.confirmed_by,
            facts_digest=s.facts_digest,
            stands=stands,
        )
        for s, stands in signatures
    ]


async def signatures_of(
    uow: handlers.NotifierUnitOfWork, signal_id: uuid.UUID
) -> list[tuple[AssessmentSigned, bool]]:
    """Every signature of a signal in its notification stream, with whether it stands
    (a reopening after it sets it aside)."""
    async with uow:
        events = await uow.notification_events(signal_id)
    state = fold(events)
    standing = {id(s) for s in state.signatures} if state is not None else set()
    return [(e, id(e) in standing) for e in events if isinstance(e, AssessmentSigned)]


class FormProblem(Exception):
    """A field of the form is missing or wrong; the message names it, never its value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


#: how a refused field is named to the signer (the page's labels)
_LABELS = {
    "csrf": "Session token",
    "meaning": "Meaning",
    "comment": "Comment",
    "password": "Password",
    "code": "One-time code",
}


def _read_form(raw: bytes) -> dict[str, list[str]]:
    """Every value of each field this page sends (blank ones too, so that a repeated
    field is seen as repeated); other fields are dropped."""
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(413, "The form is larger than any this page sends.")
    try:
        parsed = parse_qs(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=2 * len(_FIELDS),
        )
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "Unreadable form: go back and send it again.") from None
    return {name: values for name, values in parsed.items() if name in _FIELDS}


def _single(form: dict[str, list[str]]) -> dict[str, str]:
    """Each field's one value. A field sent more than once is refused, never one of its
    values picked: a signature must mean exactly what the signer chose (11.50)."""
    for name in _FIELDS:
        if len(form.get(name, ())) > 1:
            raise FormProblem(name, f"{_LABELS[name]}: sent more than once; send the form again.")
    return {name: values[0] for name, values in form.items() if values}


def _validated(form: dict[str, str]) -> tuple[Assessment, str, str, str | None]:
    """The signature's fields, each checked before the signer is confirmed (so that a
    refused form never costs a password attempt). Raises FormProblem naming the field."""
    meaning = form.get("meaning", "")
    if meaning not in MEANINGS:
        raise FormProblem("meaning", "Meaning: choose what your signature means.")
    comment = form.get("comment", "").replace("\r\n", "\n")
    if len(comment) > MAX_COMMENT:
        raise FormProblem("comment", f"Comment: keep it to {MAX_COMMENT} characters.")
    if unstorable_text(comment) is not None:
        raise FormProblem(
            "comment",
            "Comment: it holds a character the audit log cannot keep (a NUL character, "
            "often pasted from another program); retype the comment.",
        )
    password = form.get("password", "")
    if not password or len(password) > MAX_PASSWORD:
        raise FormProblem("password", "Password: enter your password to sign.")
    code = form.get("code", "").strip() or None
    if code is not None and (len(code) > MAX_CODE or not code.isdigit()):
        raise FormProblem("code", "One-time code: enter the digits your authenticator shows.")
    return meaning, comment, password, code


def router(deps: WorkspaceDeps) -> APIRouter:
    """The assessment routes."""
    api = APIRouter()
    # a default, not an annotation: annotations are strings here, read in module scope
    signed_in = Depends(deps.session)

    async def _review(session: Session, signal_id: uuid.UUID) -> handlers.SignatureReview:
        """The signal as this person may sign it; 404 for anything outside their scope."""
        try:
            seen = await handlers.review_signature(
                PostgresNotifierUnitOfWork(deps.pool()),
                signal_id,
                person_id=session.viewer.person_id,
                context=deps.context,
            )
        except (handlers.UnknownSignal, handlers.NotOnRoster):
            not_found(session, PAGE, signal_id=signal_id)
        if not session.viewer.may_see_clinical(seen.state.opened.study_id, seen.state.site_id):
            not_found(session, PAGE, signal_id=signal_id)
        return seen

    async def _page(
        session: Session,
        seen: handlers.SignatureReview,
        *,
        status: int = 200,
        problem: FormProblem | None = None,
        closed: handlers.SignalClosed | None = None,
        form: dict[str, str] | None = None,
    ) -> HTMLResponse:
        state: NotificationState = seen.state
        signal = seen.facts.signal
        zone = deps.zone(state.opened.study_id, state.site_id)
        signed = await signatures_of(PostgresNotifierUnitOfWork(deps.pool()), signal.signal_id)
        return render(
            "assessment.html",
            session,
            status=status,
            title=f"Assessment of a signal: {signal.rule_title}",
            state=state,
            content=state.content(),
            signal=signal,
            facts=seen.facts,
            zone=zone,
            raised_at=local_time(state.opened.raised_at, zone),
            signatures=manifestations(signed, zone),
            own=seen.own,
            closed=closed if closed is not None else seen.closed,
            problem=problem,
            meanings=MEANINGS,
            form=form or {},
            max_comment=MAX_COMMENT,
        )

    @api.get("/signals/{signal_id}/assess", response_class=HTMLResponse)
    async def assessment_form(signal_id: uuid.UUID, session: Session = signed_in) -> HTMLResponse:
        return await _page(session, await _review(session, signal_id))

    @api.post("/signals/{signal_id}/assess", response_class=HTMLResponse)
    async def sign(
        signal_id: uuid.UUID, request: Request, session: Session = signed_in
    ) -> Response:
        sent = _read_form(await request.body())
        if sent.get("csrf") != [session.csrf]:
            raise HTTPException(403, "The form's session token is missing or stale: reload.")
        seen = await _review(session, signal_id)
        kept = {k: v[-1] for k, v in sent.items() if k in ("meaning", "comment") and v}
        if (closed := seen.closed) is not None and seen.own is None:
            return await _page(session, seen, status=409, closed=closed)
        try:
            meaning, comment, password, code = _validated(_single(sent))
        except FormProblem as problem:
            if problem.field == "meaning":
                kept.pop("meaning", None)
            if problem.field == "comment":
                kept.pop("comment", None)  # never echo what could not be kept
            return await _page(session, seen, status=422, problem=problem, form=kept)
        if seen.own is None:
            try:
                confirmed_by = await deps.authenticator.confirm_signer(session, password, code)
            except SignatureRefused as refused:
                field = "code" if str(refused).startswith("code") else "password"
                return await _page(
                    session,
                    seen,
                    status=422,
                    problem=FormProblem(field, _refusal(field, refused)),
                    form=kept,
                )
        else:
            confirmed_by = seen.own.confirmed_by
        try:
            signed = await handlers.sign(
                PostgresNotifierUnitOfWork(deps.pool()),
                signal_id,
                person_id=session.viewer.person_id,
                meaning=meaning,
                comment=comment,
                confirmed_by=cast(SignerConfirmation, confirmed_by),
                context=deps.context,
            )
        except (handlers.UnknownSignal, handlers.NotOnRoster):
            not_found(session, PAGE, signal_id=signal_id)
        except handlers.SignalClosed as error:
            return await _page(session, seen, status=409, closed=error)
        except handlers.FactsMissing:
            raise HTTPException(
                409, "The records this signal stands on are not all in the audit log yet."
            ) from None
        # POST/redirect/GET: the signal page shows the signature, and a reload of it
        # never sends the password again
        return RedirectResponse(
            f"{PREFIX}/signals/{signal_id}?signed={'new' if signed.new else 'again'}"
            "#signatures-heading",
            status_code=303,
        )

    return api


def _refusal(field: str, refused: SignatureRefused) -> str:
    """What to tell a signer whose confirmation failed: the field, never what was typed."""
    if field == "code":
        return "One-time code: not accepted. Enter the current code from your authenticator."
    text = str(refused)
    if "locked" in text:
        return "Password: the account is locked after repeated failures; try again later."
    return "Password: not accepted. Enter your own password to sign."
