"""How Vigil reads a medication's route, frequency and dose unit, and how it names each in
what it derives (pure).

A medication record's drug, dose unit, route and frequency are a site's text, and free
text may carry anything, a patient's name included. Each is read against the tables here
(routes: EDQM Standard Terms, SNOMED CT, HL7 v2 table 0162 and the spellings sites use,
Chinese ones included; frequencies: the usual clinical abbreviations, HL7 timing codes and
Chinese forms; dose units: UCUM and pharmacy spellings). Signals, data-quality issues and
the messages made of them say each in Vigil's own spelling, else a fixed phrase: the text
as sent stays only in the recorded medication.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

DOSE_UNIT_NOT_RECOGNISED = "(dose unit not recognised)"
FREQUENCY_NOT_RECOGNISED = "(frequency not recognised)"
FREQUENCY_NOT_GIVEN = "(frequency not given)"
ROUTE_NOT_RECOGNISED = "(route not recognised)"


def normalise(text: str) -> str:
    """Compatibility form (full-width letters, the micro sign), lower case, without dots,
    with single spaces ("Twice  Daily." is "twice daily", "p.o." is "po")."""
    folded = unicodedata.normalize("NFKC", text).lower().replace(".", "")
    return " ".join(folded.split())


# -- routes -----------------------------------------------------------------------------------

# Canonical route -> the spellings that mean it. Sources: EDQM Standard Terms (route of
# administration), SNOMED CT route of administration values (< 284009009), HL7 v2 table
# 0162 (Route of administration) codes, HL7 v3 RouteOfAdministration codes
# (http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration, as FHIR R4 lists them:
# PO "Swallow, oral", IVINJ "Injection, intravenous", SQ "Injection, subcutaneous"; v3's
# SCINJ is subconjunctival, not subcutaneous, and is left unread), and the spellings sites
# send (abbreviations, Chinese). A coded route may come as the bare code, as
# "system|code" / "system#code", or as FHIR ingest records a coding: "code|display" (the
# code is read first, the display only when the code is not in the table).
ROUTES: dict[str, tuple[str, ...]] = {
    "oral": (
        "oral", "oral use", "by mouth", "per os", "po", "os", "orally", "enteral oral",
        "26643006",  # SNOMED CT Oral route
        "20053000",  # EDQM Standard Terms Oral use
        "chew", "dissolve", "swishswal",  # HL7 v3 (PO is above)
        "口服", "口服给药", "口服用",
    ),
    "intravenous": (
        "intravenous", "intravenous use", "intravenously", "iv", "ivgtt", "iv gtt", "ivp", "ivpb",
        "ivd", "iv drip", "iv push", "iv bolus", "iv infusion", "iv piggyback",
        "intravenous infusion", "intravenous drip", "intravenous bolus",
        "intravenous injection", "intravenous push", "continuous infusion",
        "47625008",  # SNOMED CT Intravenous route
        "255560000",  # SNOMED CT Intravenous (qualifier value): the R4 examples' route
        "20045000",  # EDQM Standard Terms Intravenous use
        # HL7 v3 RouteOfAdministration (IV is above); IVINFUS is a common sender spelling
        "ivinj", "ivinfus", "ivinjbol", "ivpush", "ivrpush", "ivspush", "ivc", "ivcc",
        "ivci", "pca",
        "静脉", "静脉滴注", "静滴", "静脉注射", "静注", "静推", "静脉推注", "静脉输注",
        "静脉输液", "静脉给药", "静脉泵入", "泵入",
    ),
    "intramuscular": (
        "intramuscular", "intramuscular use", "intramuscularly", "im",
        "intramuscular injection", "im injection", "imd", "imz",  # HL7 v3 IM, IMD, IMZ
        "78421000",  # SNOMED CT Intramuscular route
        "20035000",  # EDQM Standard Terms Intramuscular use
        "肌内注射", "肌注", "肌肉注射",
    ),
    "subcutaneous": (
        "subcutaneous", "subcutaneous use", "subcutaneously", "sc", "sq", "subcut", "sub-q",
        "subq", "subcutaneous injection", "sc injection", "sqinfus",  # HL7 v3 SQ, SQINFUS
        "34206005",  # SNOMED CT Subcutaneous route
        "20066000",  # EDQM Standard Terms Subcutaneous use
        "皮下注射", "皮下",
    ),
    "intradermal": (
        "intradermal", "intradermal use", "id", "372464004", "idinj", "皮内注射", "皮内",
    ),
    "topical": (
        "topical", "cutaneous", "cutaneous use", "apply externally", "ap", "tp",
        "external", "externally", "skin",
        "6064005",  # SNOMED CT Topical route
        "外用", "外涂", "涂抹", "皮肤外用",
    ),
    "transdermal": ("transdermal", "transdermal use", "td", "patch", "45890007", "trnsderm",
                    "trnsdermd", "透皮", "贴剂"),
    "inhalation": (
        "inhalation", "inhalation use", "inhaled", "inh", "nebulised", "nebulized",
        "nebulisation", "nebulization", "neb", "ipinhl", "orneb", "吸入", "雾化吸入", "雾化",
    ),
    "nasal": (
        "nasal", "nasal use", "intranasal", "ns", "in", "46713006", "nasalinstil", "鼻用",
        "滴鼻", "鼻喷",
    ),
    "rectal": (
        "rectal", "rectal use", "per rectum", "pr", "37161004", "recinstl", "直肠给药", "灌肠",
        "纳肛",
    ),
    "vaginal": (
        "vaginal", "vaginal use", "per vagina", "pv", "vg", "16857009", "vaginsi", "阴道给药",
    ),
    "ophthalmic": (
        "ophthalmic", "ocular use", "ocular", "eye", "op", "54485002", "opthalta", "滴眼", "眼用",
    ),
    "otic": ("otic", "auricular use", "ear", "ot", "10547007", "滴耳", "耳用"),
    "sublingual": ("sublingual", "sublingual use", "sl", "37839007", "舌下", "舌下含服"),
    "buccal": ("buccal", "buccal use", "b", "54471007", "buc", "口腔黏膜", "含服"),
    "intrathecal": (
        "intrathecal", "intrathecal use", "it", "72607000", "itinj", "鞘内注射", "鞘注",
    ),
    "intra-articular": (
        "intra-articular", "intraarticular", "intra-articular use", "is",
        "intrasynovial", "12130007", "iartinj", "关节腔注射", "关节腔内注射",
    ),
    "intra-arterial": ("intra-arterial", "intraarterial", "ia", "58100008", "iainj", "动脉注射"),
    "enteral tube": (
        "nasogastric", "ng", "ng tube", "gastrostomy", "gastrostomy tube", "gtt", "peg",
        "j tube", "jejunostomy", "gastric tube", "ngt", "gt", "eft", "gjt", "nasogasinstil",
        "鼻饲", "胃管",
    ),
    "epidural": ("epidural", "epidural use", "ep", "epidurinj", "硬膜外"),
}  # fmt: skip

# Words that describe a dose form or how an administration is given, not its route: "oral
# tablet", "po tab", "iv drip", "im injection" name the route by their other word.
_FORM_WORDS = frozenset(
    (
        "tablet", "tablets", "tab", "tabs", "capsule", "capsules", "cap", "caps", "solution",
        "suspension", "syrup", "liquid", "drops", "drop", "drip", "infusion", "injection",
        "inj", "bolus", "push", "piggyback", "route", "use", "administration", "dose",
        "swallow",  # HL7 v3 PO's print name: "Swallow, oral"
        "film-coated", "coated", "dispersible", "soluble", "granules", "powder", "pump",
        "片", "片剂", "胶囊", "注射液", "注射", "给药", "途径",
    )
)  # fmt: skip

# "ih" is HL7 0162 for inhalation but, in Chinese hospitals, injectio hypodermica
# (subcutaneous): it is left unread, so a counted drug given "ih" raises a data-quality issue.
_ROUTE_OF: dict[str, str] = {
    normalise(spelling): route for route, spellings in ROUTES.items() for spelling in spellings
}
_SPLIT = re.compile(r"[\s,;:()\[\]]+")
# codes too short or too common as words to be read inside a phrase: only a route field
# that is exactly the code means the route
_CODES_ONLY = frozenset(
    ("b", "in", "is", "it", "on", "os", "ia", "id", "ep", "op", "ot", "ap", "tp", "ns", "vg",
     "ih", "pv", "td", "ng", "gtt", "ear", "eye", "skin", "patch", "gt", "eft", "gjt", "ivc",
     "pca", "buc", "imd", "imz", "chew")
)  # fmt: skip


def _code(text: str) -> str:
    """A coded route sent with its system ("http://snomed.info/sct|26643006")."""
    for mark in ("|", "#", "^"):
        if mark in text:
            return text.rsplit(mark, 1)[1]
    return text


# SNOMED CT's fully specified names end with a semantic tag: a terminology server's
# display for 47625008 is "Intravenous route (qualifier value)"
_SEMANTIC_TAG = re.compile(r"\s*\((?:qualifier value|route)\)\s*$", re.IGNORECASE)


def route_of(route: str | None) -> str | None:
    """The canonical route a route as sent means, or None when Vigil cannot tell. A coding
    recorded as "code|display" is read by its code, else by its display."""
    if not route:
        return None
    if "|" in route:
        for part in route.split("|"):
            found = _route_of_one(part)
            if found:
                return found
        return None
    return _route_of_one(route)


def _route_of_one(route: str) -> str | None:
    route = _SEMANTIC_TAG.sub("", route)
    if not route.strip():
        return None
    key = normalise(route)
    found = _ROUTE_OF.get(key) or _ROUTE_OF.get(normalise(_code(route)))
    if found:
        return found
    # a route word with dose-form words around it: "oral tablet", "iv drip", "静脉滴注给药"
    words = [w for w in _SPLIT.split(key) if w]
    routes = {_ROUTE_OF[w] for w in words if w in _ROUTE_OF and w not in _CODES_ONLY}
    rest = [w for w in words if w not in _ROUTE_OF or w in _CODES_ONLY]
    if len(routes) == 1 and all(w in _FORM_WORDS for w in rest):
        return routes.pop()
    for spelling in sorted((s for s in _ROUTE_OF if not s.isascii()), key=len, reverse=True):
        if key.startswith(spelling) and all(
            w in _FORM_WORDS for w in _SPLIT.split(key[len(spelling) :]) if w
        ):
            return _ROUTE_OF[spelling]
    return None


def shown_route(route: str | None) -> str:
    return route_of(route) or ROUTE_NOT_RECOGNISED


# -- frequencies ------------------------------------------------------------------------------

_ONCE, _TWICE, _THRICE, _FOUR = Fraction(1), Fraction(2), Fraction(3), Fraction(4)
FREQUENCIES: dict[str, Fraction] = {
    **dict.fromkeys(
        (
            "qd", "od", "daily", "once daily", "once a day", "once per day", "q24h", "qam",
            "qpm", "qhs", "hs", "qn", "om", "on", "mane", "nocte", "every day", "every morning",
            "every night", "every evening", "at bedtime", "nightly", "1/d", "/d", "1x daily",
            "x1/day", "1 time daily", "q1d", "1id", "qday",
            "每日一次", "一日一次", "每天一次", "一天一次", "每日1次", "一日1次", "每天1次",
            "每晚一次", "每早一次", "每晨一次", "晨起顿服", "顿服", "睡前", "每晚", "每早",
        ),
        _ONCE,
    ),
    **dict.fromkeys(
        (
            "bid", "bd", "q12h", "twice daily", "twice a day", "2/d", "2x daily", "x2/day",
            "2 times daily", "2 times a day", "every 12 hours",
        ),
        _TWICE,
    ),
    **dict.fromkeys(
        ("tid", "tds", "q8h", "three times daily", "three times a day", "3/d", "3x daily",
         "x3/day", "3 times daily", "3 times a day", "every 8 hours"),
        _THRICE,
    ),
    **dict.fromkeys(
        ("qid", "qds", "q6h", "four times daily", "four times a day", "4/d", "4x daily",
         "x4/day", "4 times daily", "4 times a day", "every 6 hours"),
        _FOUR,
    ),
    **dict.fromkeys(
        ("qod", "q48h", "every other day", "alternate days", "eod", "隔日一次", "隔天一次"),
        Fraction(1, 2),
    ),
    **dict.fromkeys(
        ("qw", "weekly", "q1w", "once weekly", "once a week", "every week", "每周一次"),
        Fraction(1, 7),
    ),
    **dict.fromkeys(
        ("q2w", "biweekly", "every 2 weeks", "每两周一次", "每2周一次"), Fraction(1, 14)
    ),
    **dict.fromkeys(
        ("q4w", "monthly", "every 4 weeks", "每四周一次", "每4周一次"), Fraction(1, 28)
    ),
}  # fmt: skip

#: one administration, not a regimen: HL7 table 0335 "Once", STAT, and the Chinese order
#: marks 'st' (statim), 立即 (at once) and 临时 (a temporary, single order). Counted as
#: one administration on its day: a dose rule takes it as stopping a day after it started.
SINGLE_DOSE = frozenset(
    normalise(spelling)
    for spelling in (
        "once", "stat", "st", "one time", "once only", "single dose", "x1", "1 dose",
        "立即", "临时", "立即执行", "临时医嘱", "单次", "一次", "st 立即",
    )
)  # fmt: skip

_CHINESE_COUNT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6}
_CHINESE_NUMBER = {**_CHINESE_COUNT, "七": 7, "八": 8, "九": 9, "十": 10, "十二": 12}
# "每8小时一次", "每12小时1次", "每六小时一次": every n hours; "每2日一次", "每3天1次": every n
# days; "每2周一次": every n weeks
_CHINESE_EVERY = re.compile(
    r"^每(\d+|十二|[一二两三四五六七八九十])(?:个)?(小时|日|天|周|星期)(?:一|1)次$"
)
_CHINESE_PERIOD_DAYS = {"小时": Fraction(1, 24), "日": Fraction(1), "天": Fraction(1),
                        "周": Fraction(7), "星期": Fraction(7)}  # fmt: skip
# HL7 v2.5.1 table 0335 (repeat pattern): Q<n>D every n days, <n>ID n times a day,
# Q<n>W every n weeks (Q<n>H is read by _HOURLY)
_HL7_EVERY_DAYS = re.compile(r"^q ?(\d+) ?d$")
_HL7_TIMES_A_DAY = re.compile(r"^(\d+) ?id$")
_HL7_EVERY_WEEKS = re.compile(r"^q ?(\d+) ?wk?$")
# "每日两次", "一日3次", "每天四次": times a day
_CHINESE_DAILY = re.compile(r"^(?:每日|一日|每天|一天)([一二两三四五六1-6])次$")
# "1-0-1", "1-1-1", "2-0-1", "1-0-0-1": doses at morning, noon, (evening,) night, summed
_PATTERN = re.compile(r"^\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?){2,3}$")
# "q8h", "q 8 h", "every 8 hours", "q8hr": every n hours
_HOURLY = re.compile(r"^(?:q ?(\d+) ?h(?:r|rs|ours?)?|every (\d+) ?h(?:r|rs|ours?)?)$")
# "3x daily", "3 x/day", "x3/day", "3/day", "3 times per day"
_TIMES = re.compile(
    r"^(?:x ?(\d+)|(\d+) ?(?:x|times)) ?(?:/ ?d(?:ay)?|daily|a day|per day|/24h)$|^(\d+)/day$"
)


def is_single_dose(frequency: str | None) -> bool:
    """Whether the frequency says one administration, not a regimen ("once", STAT, st)."""
    return frequency is not None and _read(normalise(frequency)) == "single"


def per_day(frequency: str | None) -> Fraction | None:
    """Administrations per day (a single dose: one), or None if not recognised or not
    given: a missing frequency is not taken as once daily (it may be 7.5 mg twice a day),
    so a dose rule cannot sum it and says so."""
    if frequency is None:
        return None
    read = _read(normalise(frequency))
    return _ONCE if isinstance(read, str) else read


def _read(key: str) -> Fraction | str | None:
    """A normalised frequency: administrations a day, "single" for one, else None. A
    frequency with a route word in it ("po bid", "bid po") is read without the route."""
    found = _read_whole(key)
    if found is not None:
        return found
    words = [w for w in _SPLIT.split(key) if w]
    rest = [w for w in words if route_of(w) is None and w not in _FORM_WORDS]
    if rest and len(rest) < len(words):
        return _read_whole(" ".join(rest))
    return None


def _read_whole(key: str) -> Fraction | str | None:
    if key in SINGLE_DOSE:
        return "single"
    if key in FREQUENCIES:
        return FREQUENCIES[key]
    if match := _CHINESE_EVERY.match(key):
        count = match.group(1)
        n = _CHINESE_NUMBER.get(count) or int(count)
        days = _CHINESE_PERIOD_DAYS[match.group(2)] * n
        return 1 / days if n else None
    if match := _HL7_EVERY_DAYS.match(key):
        n = int(match.group(1))
        return Fraction(1, n) if n else None
    if match := _HL7_TIMES_A_DAY.match(key):
        n = int(match.group(1))
        return Fraction(n) if n else None
    if match := _HL7_EVERY_WEEKS.match(key):
        n = int(match.group(1))
        return Fraction(1, 7 * n) if n else None
    if match := _CHINESE_DAILY.match(key):
        count = match.group(1)
        return Fraction(_CHINESE_COUNT.get(count) or int(count))
    if _PATTERN.match(key):
        return sum((Fraction(part) for part in key.split("-")), Fraction(0)) or None
    if match := _HOURLY.match(key):
        hours = int(match.group(1) or match.group(2))
        return Fraction(24, hours) if hours else None
    if match := _TIMES.match(key):
        times = int(next(g for g in match.groups() if g))
        return Fraction(times) if times else None
    return None


def known_frequency(frequency: str | None) -> str | None:
    """Vigil's spelling of a frequency it recognises, else None: a table abbreviation in
    capitals, a single dose "ONCE", any other in administrations a day."""
    if frequency is None:
        return None
    times = per_day(frequency)
    if times is None:
        return None
    key = normalise(frequency)
    if is_single_dose(frequency):
        return "ONCE"
    if key in FREQUENCIES and key.isascii():
        return key.upper() if " " not in key and key.isalnum() else key
    return f"{_plain(times)}x/day"


def shown_frequency(frequency: str | None) -> str:
    if frequency is None:
        return FREQUENCY_NOT_GIVEN
    return known_frequency(frequency) or FREQUENCY_NOT_RECOGNISED


def _plain(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{Decimal(value.numerator) / Decimal(value.denominator):.3g}"


# -- dose units -------------------------------------------------------------------------------

# Vigil's spelling -> (mg per unit, spellings). The micro sign (U+00B5) and the Greek mu
# (U+03BC) are one after NFKC normalisation.
DOSE_UNITS: dict[str, tuple[Fraction, tuple[str, ...]]] = {
    "mg": (Fraction(1), ("mg", "mgs", "milligram", "milligrams", "milligramme", "毫克")),
    "g": (Fraction(1000), ("g", "gm", "gram", "grams", "gramme", "克")),
    "mcg": (
        Fraction(1, 1000),
        ("mcg", "ug", "µg", "μg", "microgram", "micrograms", "microgramme", "微克"),
    ),
}
_UNIT_OF: dict[str, str] = {
    normalise(spelling): unit
    for unit, (_, spellings) in DOSE_UNITS.items()
    for spelling in spellings
}


def dose_unit_of(unit: str) -> str | None:
    """Vigil's spelling of a dose unit it converts to mg, else None."""
    return _UNIT_OF.get(normalise(unit))


def mg_per_unit(unit: str) -> Fraction | None:
    known = dose_unit_of(unit)
    return DOSE_UNITS[known][0] if known else None


@dataclass(frozen=True)
class DoseUnit:
    """What a dose unit says: mg per unit, and whether the dose is the day's total
    ("mg/d": whatever the frequency says) or per kg of body weight ("mg/kg")."""

    shown: str
    mg: Fraction
    per_day: bool = False
    per_kg: bool = False


# "mg/d" (UCUM; FHIR Dosage.maxDosePerPeriod, CDISC CMDOSU), "mg/kg" (a weight-based dose:
# methylprednisolone 1 mg/kg), "mg/kg/d"; Chinese 日/天 (day), 千克/公斤 (kg)
_PER_DAY = ("/d", "/day", "/24h", "/24 h", "/日", "/天", "/qd")
_PER_KG = ("/kg", "/千克", "/公斤")


def read_dose_unit(unit: str) -> DoseUnit | None:
    """A dose unit Vigil converts to mg, alone, per day, per kg, or per kg and day; else
    None."""
    key = normalise(unit).replace(" ", "")
    per_day = per_kg = False
    for suffix in _PER_DAY:
        if key.endswith(suffix.replace(" ", "")):
            key, per_day = key[: -len(suffix.replace(" ", ""))], True
            break
    for suffix in _PER_KG:
        if key.endswith(suffix):
            key, per_kg = key[: -len(suffix)], True
            break
    known = _UNIT_OF.get(key)
    if known is None:
        return None
    shown = known + ("/kg" if per_kg else "") + ("/d" if per_day else "")
    return DoseUnit(shown, DOSE_UNITS[known][0], per_day, per_kg)


def shown_dose_unit(unit: str) -> str:
    """A dose unit Vigil converts to mg, in its spelling ("MCG" is "mcg", "mg/day" is
    "mg/d"), else a fixed phrase."""
    read = read_dose_unit(unit)
    return read.shown if read else DOSE_UNIT_NOT_RECOGNISED
