"""``vigil audit verify``: the chain, the anchors, and a new anchor when all is well.

By default every row is re-hashed, from position 1: a row altered anywhere is found, however
many verifies passed before it was altered. ``from_anchor`` is the quicker check: it trusts
the rows up to the newest verified anchor, re-hashes only the rows after it, and says so.
Anchors are checked in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared.eventstore.anchors import Anchor, check_anchors, read_anchors, record_anchor
from shared.eventstore.canonical import GENESIS_HASH
from shared.eventstore.postgres import store_id
from shared.eventstore.verify import ChainReport, verify_chain


@dataclass
class AuditResult:
    """Everything verify found, ready to print."""

    chain: ChainReport
    resumed_from: Anchor | None
    anchors_checked: int
    latest_anchor: Anchor | None
    anchor_problems: list[str] = field(default_factory=list)
    new_anchor: Anchor | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.anchor_problems

    @property
    def not_rehashed(self) -> int:
        """Positions 1..N were trusted, not re-hashed (0 for a full walk)."""
        return self.resumed_from.position if self.resumed_from is not None else 0

    def lines(self) -> list[str]:
        """What an auditor reads."""
        out = []
        if self.resumed_from is not None:
            out.append(
                f"quick check from the verified anchor at position {self.resumed_from.position} "
                f"({self.resumed_from.recorded_at}): positions 1..{self.not_rehashed} were "
                "NOT re-hashed (run without --from-anchor to re-hash every row)"
            )
        if self.chain.ok:
            span = (
                f"re-hashed positions {self.not_rehashed + 1}..{self.chain.last_position}"
                if self.chain.checked
                else "no rows to re-hash"
            )
            out.append(
                f"chain: {self.chain.checked} event(s) verified ({span}), head at position "
                f"{self.chain.last_position} hash {self.chain.last_hash.hex()}"
            )
        else:
            where = "" if self.chain.broken_at is None else f" at position {self.chain.broken_at}"
            out.append(f"chain BROKEN{where}: {self.chain.problem}")
        if self.latest_anchor is not None:
            out.append(
                f"anchors: {self.anchors_checked} checked; latest at position "
                f"{self.latest_anchor.position} hash {self.latest_anchor.hash} "
                f"({self.latest_anchor.kind} {self.latest_anchor.recorded_at})"
            )
        else:
            out.append("anchors: none recorded yet for this store")
        out.extend(f"anchor MISMATCH: {problem}" for problem in self.anchor_problems)
        if self.new_anchor is not None:
            out.append(f"anchored head at position {self.new_anchor.position}")
        out.append("OK" if self.ok else "FAILED")
        return out


async def audit_verify(
    pool: asyncpg.Pool, anchor_file: Path, *, from_anchor: bool = False
) -> AuditResult:
    """Re-hash every row and check all anchors; with ``from_anchor``, re-hash only the rows
    after the newest verified anchor (the anchors are checked all the same)."""
    async with pool.acquire() as connection:
        anchors = read_anchors(anchor_file, await store_id(connection))
        anchor_problems = await check_anchors(connection, anchors)
    verified = [a for a in anchors if a.kind == "verified"]
    resume = verified[-1] if from_anchor and verified else None
    if resume is not None and anchor_problems:
        resume = None  # the anchored prefix itself is in doubt: walk everything
    chain = await verify_chain(
        pool,
        after_position=resume.position if resume else 0,
        after_hash=resume.hash_bytes if resume else GENESIS_HASH,
    )
    result = AuditResult(
        chain=chain,
        resumed_from=resume,
        anchors_checked=len(anchors),
        latest_anchor=anchors[-1] if anchors else None,
        anchor_problems=anchor_problems,
    )
    if result.ok:
        async with pool.acquire() as connection:
            result.new_anchor = await record_anchor(
                connection,
                anchor_file,
                "verified",
                position=chain.last_position,
                hash_=chain.last_hash,
            )
    return result
