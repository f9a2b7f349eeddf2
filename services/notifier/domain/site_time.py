"""Times as people read them: in the site's time zone, to the minute, with the zone named
(pure).

A person reads "2026-12-06 06:28 CST (Asia/Shanghai)", never a raw UTC timestamp with
microseconds; the zone's abbreviation alone is ambiguous (CST is also US Central), so
the IANA name follows it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

UTC_ZONE = ZoneInfo("UTC")
# an ISO 8601 date-time with its offset, as stored values hold them
_ISO_MOMENT = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)")


def local_time(moment: datetime, zone: ZoneInfo = UTC_ZONE) -> str:
    """``2026-12-06 06:28 CST (Asia/Shanghai)``; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    abbreviation = local.tzname() or ""
    if zone.key == "UTC":
        return f"{local:%Y-%m-%d %H:%M} UTC"
    return f"{local:%Y-%m-%d %H:%M} {abbreviation} ({zone.key})".replace("  ", " ")


def local_date(moment: datetime, zone: ZoneInfo = UTC_ZONE) -> str:
    """The calendar day at the site: ``2026-12-06``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(zone):%Y-%m-%d}"


def time_left(deadline: datetime, now: datetime) -> str:
    """``3 h 20 min left``, ``overdue by 1 d 2 h``; to the minute."""
    delta = deadline - now
    overdue = delta < timedelta(0)
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    if not days:
        parts.append(f"{mins} min")
    text = " ".join(parts)
    return f"overdue by {text}" if overdue else f"{text} left"


def local_times_in(text: str, zone: ZoneInfo = UTC_ZONE) -> str:
    """``text`` with every ISO date-time that names its offset shown as :func:`local_time`
    shows it (a rule's computed values quote the times of the results they used)."""

    def local(match: re.Match[str]) -> str:
        try:
            moment = datetime.fromisoformat(match.group(0).replace("Z", "+00:00"))
        except ValueError:
            return match.group(0)
        return local_time(moment, zone)

    return _ISO_MOMENT.sub(local, text)
