"""Episodes: the stretches of clinical time where a rule's condition held (pure).

An episode opens at the first point where the condition holds and resolves at the first
later point where it does not. ``Evaluation`` collects the events the engine derives from
comparing these episodes with the ones already on record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.safety_rules.domain.conditions import Point
from shared.events.payloads import EVENT_ID_NAMESPACE, EventPayload


def signal_id_for(
    rule_id: str, input_event_id: uuid.UUID, episode_key: str | None = None
) -> uuid.UUID:
    """The same rule opening on the same input always gives the same signal id."""
    scope = f"{rule_id}:{episode_key}" if episode_key else rule_id
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"signal:{scope}:{input_event_id}")


@dataclass(frozen=True)
class Episode:
    """An episode as the facts now tell it."""

    points: tuple[Point, ...]
    resolution: Point | None

    @property
    def opening(self) -> Point:
        return self.points[0]

    @property
    def worst(self) -> Point:
        """The highest grade, the earliest point of it when several have it."""
        return max(enumerate(self.points), key=lambda item: (item[1].grade or 0, -item[0]))[1]

    @property
    def start(self) -> datetime:
        return self.opening.at

    @property
    def end(self) -> datetime | None:
        return self.resolution.at if self.resolution else None


def episodes_of(points: Iterable[Point]) -> list[Episode]:
    """Walk the points in clinical time: open on the first that holds, close on the next
    moment where none holds. At one moment, any point that holds keeps the episode open: a
    normal AST drawn with an abnormal ALT does not close what the ALT keeps open."""
    moments: dict[datetime, list[Point]] = {}
    for point in sorted(points, key=lambda p: p.sort_key):
        moments.setdefault(point.at, []).append(point)
    episodes: list[Episode] = []
    current: list[Point] = []
    for group in moments.values():
        holding = [p for p in group if p.holds]
        if holding:
            current += holding
        elif current:
            episodes.append(Episode(tuple(current), group[0]))
            current = []
    if current:
        episodes.append(Episode(tuple(current), None))
    return episodes


@dataclass
class Evaluation:
    """New events for one subject: signal lifecycle events and data-quality issues."""

    events: list[EventPayload] = field(default_factory=list)
    #: the fact each event is about (its causation), by position in ``events``
    causes: list[uuid.UUID | None] = field(default_factory=list)
    #: the rules that walked the subject's whole history (the rest looked at new facts only)
    walked: list[str] = field(default_factory=list)

    def add(self, event: EventPayload, cause: uuid.UUID | None) -> None:
        self.events.append(event)
        self.causes.append(cause)
