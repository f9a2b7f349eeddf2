"""Who is sending: the authenticated source behind a request or an MLLP connection.

Every channel turns its credential (an API key, a TLS client certificate, an allowed
network, or a loopback peer in development) into a Principal before any message is
accepted; what it may write is decided from the Principal alone, the same way for all
channels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """An authenticated source and what it may write."""

    source: str
    """The source's name (a laboratory, an EDC, a site system), e.g. ``pkuph-lab``."""
    credential: str
    """How it was authenticated, for the audit trail: ``api-key:<key id>``,
    ``mllp-certificate:<subject>``, ``mllp-network:<network>`` or ``dev-loopback``. Never
    the secret itself."""
    studies: frozenset[str]
    """The studies it may write; a study not listed is refused."""
    sites: frozenset[str] | None = None
    """The sites it may write within those studies; None: every site."""
    may_amend_others: bool = False
    """Whether it may move subjects and correct or cancel results that another source
    sent (a data-management key); a source may always amend its own."""

    def allows_study(self, study_id: str) -> bool:
        return study_id in self.studies

    def allows_site(self, site_id: str | None) -> bool:
        """Whether the principal may write for ``site_id`` (None: a subject with no known
        site, which any principal of the study may write)."""
        return self.sites is None or site_id is None or site_id in self.sites
