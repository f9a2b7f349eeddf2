"""The inbox's filters and scope (pure): bounded, refused by field name, and a filter can
narrow a person's scope but never widen it."""

from __future__ import annotations

import pytest

from services.notifier.domain.inbox_filters import (
    FilterRefused,
    InboxFilters,
    parse_filters,
    parse_since,
    scope_of,
)
from services.notifier.domain.workspace_access import viewer_for
from tests.support.notifier import STUDY, roster

ROSTERS = {STUDY: roster()}
INVESTIGATOR = viewer_for("pi1", ROSTERS)
MONITOR = viewer_for("mm", ROSTERS)


def test_good_filters_are_read() -> None:
    assert INVESTIGATOR is not None
    params = {
        "study": STUDY,
        "site": "S1",
        "rule": "anaemia-hb-le-9",
        "grade": "3",
        "state": "open",
    }

    assert parse_filters(params, INVESTIGATOR) == InboxFilters(
        study=STUDY, site="S1", rule="anaemia-hb-le-9", grade=3, state="open"
    )
    assert parse_filters({"grade": " ", "state": ""}, INVESTIGATOR) == InboxFilters()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"grade": "0"}, "grade"),
        ({"grade": "6"}, "grade"),
        ({"grade": "2.5"}, "grade"),
        ({"state": "OPEN"}, "state"),
        ({"site": "S 1"}, "site"),
        ({"rule": "x" * 101}, "rule"),
        ({"study": "NCT-ELSEWHERE"}, "study"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_field_and_not_its_value(
    params: dict[str, str], field: str
) -> None:
    assert INVESTIGATOR is not None
    with pytest.raises(FilterRefused, match=f"^{field}: ") as refused:
        parse_filters(params, INVESTIGATOR)

    assert refused.value.field == field
    assert next(iter(params.values())) not in str(refused.value)


def test_since_is_a_position_or_nothing() -> None:
    assert parse_since(None) == 0
    assert parse_since("42") == 42
    for bad in ("-1", "1e3", "9" * 20):
        with pytest.raises(FilterRefused, match=r"^since: "):
            parse_since(bad)


def test_site_staff_are_scoped_to_their_sites_whatever_site_they_ask_for() -> None:
    assert INVESTIGATOR is not None

    assert scope_of(INVESTIGATOR, InboxFilters()).pairs == ((STUDY, "S1"),)
    assert scope_of(INVESTIGATOR, InboxFilters(site="S2")).pairs == ()


def test_study_wide_people_see_every_site_or_the_one_they_choose() -> None:
    assert MONITOR is not None

    assert scope_of(MONITOR, InboxFilters()).pairs == ((STUDY, None),)
    assert scope_of(MONITOR, InboxFilters(site="S2")).pairs == ((STUDY, "S2"),)
