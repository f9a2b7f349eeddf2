"""The eDISH plot's points are links assistive technology can name and reach: each carries
its subject id and peaks as its name and a plain ``href``, and the plot is a named group
(an image would hide its links)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.notifier.adapters.edish_chart import edish_svg
from services.notifier.domain.edish import EdishPoint, Peak

AT = datetime(2026, 11, 17, 1, 30, tzinfo=UTC)


def point(subject_id: str, alt: str, bilirubin: str) -> EdishPoint:
    return EdishPoint(
        subject_id,
        "PKUPH-01",
        Peak("ALT", Decimal(alt), AT, uuid.uuid4()),
        Peak("total bilirubin", Decimal(bilirubin), AT, uuid.uuid4()),
        hys_law_signal=False,
    )


def test_each_point_is_a_link_named_by_its_subject_and_peaks() -> None:
    points = [point("01-002", "4.5", "2.4"), point("01-005", "1", "0.5")]
    svg = edish_svg(points, lambda p: f"/workspace/studies/S/subjects/{p.subject_id}?a=1&b=2")
    links = re.findall(r"<a [^>]*>", svg)
    assert len(links) == 2
    for subject_id, alt, bilirubin in (("01-002", "4.5", "2.4"), ("01-005", "1", "0.5")):
        href = f"/workspace/studies/S/subjects/{subject_id}?a=1&amp;b=2"
        name = f"Subject {subject_id}: ALT or AST {alt} x ULN, bilirubin {bilirubin} x ULN"
        (link,) = [found for found in links if f'href="{href}"' in found]
        assert f' href="{href}"' in link  # SVG 2's plain href, not only xlink:href
        assert f'aria-label="{name}"' in link


def test_the_plot_is_a_named_group_not_an_image() -> None:
    svg = edish_svg([point("01-002", "4.5", "2.4")], lambda p: "/x")
    root = re.match(r"<svg [^>]*>", svg)
    assert root is not None
    assert 'role="group"' in root.group(0)
    assert 'role="img"' not in root.group(0)
    assert re.search(r'aria-label="eDISH plot: [^"]+"', root.group(0))


def test_a_point_opens_its_subject_where_the_person_is_not_in_a_new_tab() -> None:
    svg = edish_svg([point("01-002", "4.5", "2.4")], lambda p: f"/s/{p.subject_id}")
    assert "<a " in svg
    assert "_blank" not in svg
