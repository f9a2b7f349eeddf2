"""Times as people read them: the site's zone, to the minute, the zone named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifier.domain.site_time import local_time, local_times_in, time_left

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def test_a_time_is_shown_in_the_site_zone_to_the_minute_with_the_zone_named() -> None:
    moment = datetime(2026, 12, 5, 22, 28, 17, 230646, tzinfo=UTC)
    assert local_time(moment, SHANGHAI) == "2026-12-06 06:28 CST (Asia/Shanghai)"
    assert local_time(moment) == "2026-12-05 22:28 UTC"


def test_daylight_saving_time_changes_the_abbreviation_not_the_instant() -> None:
    winter = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 15, 0, tzinfo=UTC)
    assert local_time(winter, NEW_YORK) == "2026-01-15 10:00 EST (America/New_York)"
    assert local_time(summer, NEW_YORK) == "2026-07-15 11:00 EDT (America/New_York)"


def test_time_left_counts_down_and_then_says_how_overdue() -> None:
    now = datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert time_left(now + timedelta(hours=3, minutes=20, seconds=59), now) == "3 h 20 min left"
    assert time_left(now + timedelta(days=2, hours=1), now) == "2 d 1 h left"
    assert time_left(now - timedelta(days=1, hours=2), now) == "overdue by 1 d 2 h"


def test_iso_times_quoted_in_computed_values_are_shown_in_the_site_zone() -> None:
    text = "ALT 180 U/L (ULN 40 U/L) collected 2026-11-17T01:30:00+00:00"
    assert local_times_in(text, SHANGHAI) == (
        "ALT 180 U/L (ULN 40 U/L) collected 2026-11-17 09:30 CST (Asia/Shanghai)"
    )
    assert local_times_in("at 2026-11-17T01:30Z and 2026-11-18", SHANGHAI) == (
        "at 2026-11-17 09:30 CST (Asia/Shanghai) and 2026-11-18"
    )
    assert local_times_in("no time here: 4.5", SHANGHAI) == "no time here: 4.5"
