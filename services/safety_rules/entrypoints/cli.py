"""The rules service's command-line tools on the audit log (``vigil rules explain``,
``vigil rules simulate``): each opens the log, reads the study files and hands both to the
handler."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

from services.safety_rules.adapters.audit_log import connected_event_store
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.explain_signal import explain_stored_signal
from services.safety_rules.handlers.simulate import StoredFact, load_facts


async def explain_signal(dsn: str, signal_id: uuid.UUID, study_dir: Path) -> str:
    """The explanation of one signal stored in the audit log at ``dsn``; the packs of
    ``study_dir`` are read only for a signal that does not carry its rule's source."""
    async with connected_event_store(dsn) as store:
        return await explain_stored_signal(
            store, signal_id, functools.partial(load_rule_packs, study_dir)
        )


async def stored_facts(dsn: str, study_id: str) -> list[StoredFact]:
    """The study's facts from the audit log at ``dsn``, subject by subject in stream order."""
    async with connected_event_store(dsn) as store:
        return await load_facts(store, study_id)
