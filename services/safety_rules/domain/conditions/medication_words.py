"""How a medication is named in what Vigil derives from it (pure).

A medication record's drug, dose unit, route and frequency are a site's text, and free
text may carry anything, a patient's name included. Signals, data-quality issues and the
messages made of them therefore say each in Vigil's own spelling: a drug by the rule's
name for what it matched, a dose unit, route or frequency by the spelling Vigil
recognises, else a fixed phrase. The text as sent stays only in the recorded medication.
"""

from __future__ import annotations

from decimal import Decimal

DOSE_UNIT_NOT_RECOGNISED = "(dose unit not recognised)"
FREQUENCY_NOT_RECOGNISED = "(frequency not recognised)"
ROUTE_NOT_RECOGNISED = "(route not recognised)"

FREQUENCIES: dict[str, Decimal] = {
    **dict.fromkeys(
        (
            "qd",
            "od",
            "daily",
            "once daily",
            "q24h",
            "qam",
            "qpm",
            "qhs",
            "hs",
            "once",
            "stat",
            "1/d",
            "/d",
            "every day",
        ),
        Decimal(1),
    ),
    **dict.fromkeys(("bid", "q12h", "twice daily", "2/d"), Decimal(2)),
    **dict.fromkeys(("tid", "q8h", "three times daily", "3/d"), Decimal(3)),
    **dict.fromkeys(("qid", "q6h", "four times daily", "4/d"), Decimal(4)),
    **dict.fromkeys(("qod", "q48h", "every other day", "eod"), Decimal("0.5")),
    **dict.fromkeys(("qw", "weekly", "q1w", "once weekly"), Decimal(1) / Decimal(7)),
    **dict.fromkeys(("q2w", "biweekly"), Decimal(1) / Decimal(14)),
    **dict.fromkeys(("q4w", "monthly"), Decimal(1) / Decimal(28)),
}
MG_PER_UNIT: dict[str, Decimal] = {
    "mg": Decimal(1),
    "g": Decimal(1000),
    "ug": Decimal("0.001"),
    "mcg": Decimal("0.001"),
    "µg": Decimal("0.001"),
}
# Routes of administration a message may name (EDQM standard terms and the usual
# abbreviations), besides the spellings a rule lists.
_ROUTES = (
    "oral",
    "po",
    "by mouth",
    "intravenous",
    "iv",
    "intramuscular",
    "im",
    "subcutaneous",
    "sc",
    "sq",
    "topical",
    "cutaneous",
    "transdermal",
    "inhalation",
    "inhaled",
    "nasal",
    "rectal",
    "vaginal",
    "ophthalmic",
    "sublingual",
    "buccal",
    "intrathecal",
    "intra-articular",
)


def normalise(text: str) -> str:
    """Lower case, without dots, with single spaces ("Twice  Daily." is "twice daily")."""
    return " ".join(text.lower().replace(".", "").split())


def known_frequency(frequency: str | None) -> str | None:
    """Vigil's spelling of a frequency it recognises ("QD" with none given), else None."""
    if frequency is None:
        return "QD"
    key = normalise(frequency)
    if key not in FREQUENCIES:
        return None
    return key.upper() if " " not in key and key.isalnum() else key


def per_day(frequency: str | None) -> Decimal | None:
    """Administrations per day (once with no frequency given), or None if not recognised."""
    return Decimal(1) if frequency is None else FREQUENCIES.get(normalise(frequency))


def shown_frequency(frequency: str | None) -> str:
    return known_frequency(frequency) or FREQUENCY_NOT_RECOGNISED


def mg_per_unit(unit: str) -> Decimal | None:
    return MG_PER_UNIT.get(unit.strip().lower())


def shown_dose_unit(unit: str) -> str:
    """A dose unit Vigil converts to mg, in its spelling ("MCG" is "mcg"), else a fixed
    phrase."""
    key = unit.strip().lower()
    return key if key in MG_PER_UNIT else DOSE_UNIT_NOT_RECOGNISED


def known_route(route: str, rule_routes: tuple[str, ...] = ()) -> str | None:
    """The spelling of ``route`` in the rule's list or Vigil's, if either has it."""
    key = normalise(route)
    for spelling in (*rule_routes, *_ROUTES):
        if normalise(spelling) == key:
            return spelling
    return None


def shown_route(route: str, rule_routes: tuple[str, ...] = ()) -> str:
    return known_route(route, rule_routes) or ROUTE_NOT_RECOGNISED
