"""The drugs Vigil knows by name: one table of the study's rule drugs with their WHO ATC
codes and the names sites write them by (generic, brand, Chinese), and how a drug as sent
is read against it (pure).

Sources: WHO Collaborating Centre for Drug Statistics Methodology, ATC/DDD Index (codes);
the INN is the name Vigil gives a drug in what it derives. Brand names are the products'
own (e.g. Solu-Medrol, Plaquenil); Chinese names are the approved Chinese generic names
(中国药品通用名称) and the common brand names. Live vaccine codes: WHO SMART Immunizations
value set IMMZ.Z.LiveAttenuated (ATC), plus BCG J07AN01 and live zoster J07BK02.

A drug as sent is split into word parts at spaces, hyphens, slashes, '+' and punctuation
("cefoperazone-sulbactam" is two drugs); a name matches when its parts appear in that
order. Chinese has no spaces: a Chinese name matches inside the text, the longest first
("泼尼松龙" is prednisolone, not prednisone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from services.safety_rules.domain.conditions.medication_words import normalise


@dataclass(frozen=True)
class Drug:
    name: str
    atc: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


def _d(name: str, atc: str = "", *names: str) -> Drug:
    return Drug(name, tuple(atc.split()), names)


DRUGS: tuple[Drug, ...] = (
    # corticosteroids for systemic use (H02AB)
    _d("prednisone", "H02AB07", "deltasone", "rayos", "泼尼松", "强的松", "醋酸泼尼松"),
    _d("prednisolone", "H02AB06", "millipred", "orapred", "泼尼松龙", "强的松龙"),
    _d(
        "methylprednisolone", "H02AB04", "medrol", "solu-medrol", "solumedrol",
        "depo-medrol", "solu-medrone", "depo-medrone", "甲泼尼龙", "甲基泼尼松龙",
        "甲基强的松龙", "甲强龙", "美卓乐",
    ),
    _d("dexamethasone", "H02AB02", "decadron", "地塞米松"),
    _d("hydrocortisone", "H02AB09", "cortisol", "solu-cortef", "cortef", "氢化可的松"),
    _d("betamethasone", "H02AB01", "celestone", "diprospan", "倍他米松", "得宝松"),
    _d("triamcinolone", "H02AB08", "kenalog", "曲安奈德", "曲安西龙", "去炎松"),
    _d("cortisone", "H02AB10", "可的松"),
    _d("deflazacort", "H02AB13", "calcort", "emflaza", "地夫可特"),
    _d("beclometasone", "", "beclomethasone", "倍氯米松"),  # inhaled/topical: not H02
    _d("budesonide", "", "布地奈德"),  # inhaled/enteric: not H02
    # antimalarials
    _d("hydroxychloroquine", "P01BA02", "plaquenil", "hcq", "羟氯喹", "硫酸羟氯喹", "纷乐"),
    # antibacterials for systemic use (J01)
    _d("benzylpenicillin", "J01CE01", "penicillin g", "青霉素", "青霉素钠", "青霉素g"),
    _d("phenoxymethylpenicillin", "J01CE02", "penicillin v", "青霉素v"),
    _d("ampicillin", "J01CA01", "氨苄西林"),
    _d("amoxicillin", "J01CA04", "amoxycillin", "阿莫西林"),
    _d("piperacillin", "J01CA12", "哌拉西林"),
    _d("flucloxacillin", "J01CF05", "氟氯西林"),
    _d("oxacillin", "J01CF04", "苯唑西林"),
    _d("clavulanic acid", "J01CR02", "clavulanate", "克拉维酸"),
    _d("sulbactam", "J01CG01", "舒巴坦"),
    _d("tazobactam", "J01CG02", "他唑巴坦"),
    _d("co-amoxiclav", "J01CR02", "augmentin", "amoxiclav"),
    _d("piperacillin-tazobactam", "J01CR05", "tazocin", "zosyn", "特治星"),
    _d("ampicillin-sulbactam", "J01CR01", "unasyn"),
    _d("cefazolin", "J01DB04", "cefazoline", "头孢唑林"),
    _d("cefuroxime", "J01DC02", "头孢呋辛"),
    _d("cefotaxime", "J01DD01", "头孢噻肟"),
    _d("ceftazidime", "J01DD02", "头孢他啶"),
    _d("ceftriaxone", "J01DD04", "rocephin", "头孢曲松", "罗氏芬"),
    # Sulperazon / 舒普深 is cefoperazone with sulbactam (J01DD62)
    _d("cefoperazone", "J01DD12 J01DD62", "头孢哌酮", "sulperazon", "舒普深"),
    _d("cefepime", "J01DE01", "头孢吡肟"),
    _d("aztreonam", "J01DF01", "氨曲南"),
    _d("meropenem", "J01DH02", "meronem", "merrem", "美罗培南", "美平"),
    _d(
        "imipenem", "J01DH51", "imipenem-cilastatin", "tienam", "primaxin", "亚胺培南",
        "泰能",
    ),
    _d("ertapenem", "J01DH03", "厄他培南"),
    _d("vancomycin", "J01XA01", "万古霉素"),
    _d("teicoplanin", "J01XA02", "替考拉宁"),
    _d("linezolid", "J01XX08", "利奈唑胺"),
    _d("daptomycin", "J01XX09", "达托霉素"),
    _d("fosfomycin", "J01XX01", "磷霉素"),
    _d("gentamicin", "J01GB03", "庆大霉素"),
    _d("amikacin", "J01GB06", "阿米卡星"),
    _d("tobramycin", "J01GB01", "妥布霉素"),
    _d("ciprofloxacin", "J01MA02", "环丙沙星"),
    _d("levofloxacin", "J01MA12", "cravit", "tavanic", "levaquin", "左氧氟沙星", "可乐必妥"),
    _d("moxifloxacin", "J01MA14", "莫西沙星"),
    _d("erythromycin", "J01FA01", "红霉素"),
    _d("clarithromycin", "J01FA09", "克拉霉素"),
    _d("azithromycin", "J01FA10", "阿奇霉素"),
    _d("clindamycin", "J01FF01", "克林霉素"),
    _d("doxycycline", "J01AA02", "多西环素"),
    _d("minocycline", "J01AA08", "米诺环素"),
    _d("tigecycline", "J01AA12", "替加环素"),
    _d("metronidazole", "J01XD01", "甲硝唑"),
    _d("colistin", "J01XB01", "polymyxin e", "多粘菌素e", "黏菌素"),
    _d("polymyxin b", "J01XB02", "多粘菌素b", "多黏菌素b"),
    _d(
        "sulfamethoxazole-trimethoprim", "J01EE01", "co-trimoxazole", "cotrimoxazole",
        "trimethoprim-sulfamethoxazole", "tmp-smx", "bactrim", "复方磺胺甲噁唑",
    ),
    # antimycotics for systemic use (J02)
    _d("amphotericin b", "J02AA01", "两性霉素b", "两性霉素"),
    _d("fluconazole", "J02AC01", "氟康唑"),
    _d("itraconazole", "J02AC02", "伊曲康唑"),
    _d("voriconazole", "J02AC03", "伏立康唑"),
    _d("posaconazole", "J02AC04", "泊沙康唑"),
    _d("isavuconazole", "J02AC05", "isavuconazonium", "cresemba", "艾沙康唑"),
    _d("caspofungin", "J02AX04", "cancidas", "科赛斯", "卡泊芬净"),
    _d("micafungin", "J02AX05", "mycamine", "米卡芬净"),
    _d("anidulafungin", "J02AX06", "eraxis", "ecalta", "阿尼芬净"),
    # antimycobacterials (J04)
    _d("rifampicin", "J04AB02", "rifampin", "利福平"),
    _d("isoniazid", "J04AC01", "异烟肼"),
    _d("pyrazinamide", "J04AK01", "吡嗪酰胺"),
    _d("ethambutol", "J04AK02", "乙胺丁醇"),
    # antivirals for systemic use (J05)
    _d("aciclovir", "J05AB01", "acyclovir", "阿昔洛韦"),
    _d("ganciclovir", "J05AB06", "更昔洛韦"),
    _d("valaciclovir", "J05AB11", "valacyclovir", "伐昔洛韦"),
    _d("foscarnet", "J05AD01", "膦甲酸钠"),
    _d("cidofovir", "J05AB12", "vistide", "西多福韦"),
    _d("remdesivir", "J05AB16", "veklury", "瑞德西韦"),
    _d("zanamivir", "J05AH01", "relenza", "扎那米韦"),
    _d("oseltamivir", "J05AH02", "tamiflu", "奥司他韦"),
    _d("peramivir", "J05AH03", "rapivab", "rapiacta", "帕拉米韦"),
    # B-cell and other biologic therapies
    # belimumab was L04AA26 until the 2022 ATC update moved it to L04AG04
    _d("belimumab", "L04AG04 L04AA26", "benlysta", "贝利尤单抗", "贝利木单抗"),
    _d(
        "rituximab", "L01FA01", "rituxan", "mabthera", "truxima", "hlx01", "利妥昔单抗",
        "美罗华", "汉利康",  # 汉利康: Henlius rituximab biosimilar (HLX01), China 2019
    ),
    _d("ocrelizumab", "L04AG08 L04AA36", "ocrevus", "奥瑞珠单抗"),
    _d("obinutuzumab", "L01FA03", "gazyva", "gazyvaro", "佳罗华", "奥妥珠单抗"),
    _d("ofatumumab", "L01FA02", "arzerra", "kesimpta", "奥法妥木单抗"),
    _d("adalimumab", "L04AB04", "humira", "修美乐", "阿达木单抗"),
    _d("infliximab", "L04AB02", "remicade", "类克", "英夫利西单抗"),
    _d("tocilizumab", "L04AC07", "actemra", "roactemra", "雅美罗", "托珠单抗"),
    _d("denosumab", "M05BX04", "prolia", "xgeva", "普罗力", "地舒单抗"),
    _d("anifrolumab", "", "saphnelo", "阿尼鲁单抗"),
    _d("telitacicept", "", "rc18", "泰它西普", "泰爱"),
    _d("atacicept", "", "阿塞西普"),  # TACI-Fc fusion protein, a B-cell therapy
    # "CTX" is how Chinese rheumatology orders name cyclophosphamide (the "CTX pulse")
    _d("cyclophosphamide", "L01AA01", "cytoxan", "endoxan", "ctx", "环磷酰胺"),
    # live attenuated vaccines (J07)
    _d("measles vaccine live", "J07BD01", "麻疹减毒活疫苗"),
    _d(
        "measles-mumps-rubella vaccine live", "J07BD52 J07BD51 J07BD53", "mmr", "mmr ii",
        "m-m-r ii", "priorix", "麻腮风", "麻腮风联合减毒活疫苗",
    ),
    _d(
        "measles-mumps-rubella-varicella vaccine live", "J07BD54", "mmrv", "proquad",
        "priorix-tetra",
    ),
    _d("mumps vaccine live", "J07BE01", "腮腺炎减毒活疫苗"),
    _d("rubella vaccine live", "J07BJ01 J07BJ51", "风疹减毒活疫苗"),
    _d(
        "varicella vaccine live", "J07BK01", "varicella vaccine", "varivax", "varilrix",
        "水痘减毒活疫苗", "水痘疫苗",
    ),
    _d(
        "zoster vaccine live", "J07BK02", "zostavax", "live zoster vaccine",
        "带状疱疹减毒活疫苗",
    ),
    _d("yellow fever vaccine", "J07BL01", "stamaril", "yf-vax", "黄热病疫苗", "黄热减毒活疫苗"),
    _d("bcg vaccine", "J07AN01", "bcg", "bacillus calmette-guerin", "卡介苗"),
    _d("typhoid vaccine oral live", "J07AP01", "vivotif", "ty21a"),
    _d(
        "poliomyelitis vaccine oral live", "J07BF01 J07BF02 J07BF04", "opv",
        "oral polio vaccine", "sabin", "脊髓灰质炎减毒活疫苗", "糖丸",
    ),
    _d(
        "rotavirus vaccine live", "J07BH01 J07BH02", "rotavirus vaccine", "rotarix",
        "rotateq", "轮状病毒疫苗",
    ),
    _d(
        "influenza vaccine live", "J07BB03", "laiv", "flumist", "fluenz",
        "live attenuated influenza vaccine", "鼻喷流感减毒活疫苗",
    ),
    _d(
        "japanese encephalitis vaccine live", "J07BA03", "乙脑减毒活疫苗",
        "乙型脑炎减毒活疫苗", "乙脑活疫苗",
    ),
    _d("dengue vaccine live", "J07BX04", "dengvaxia", "qdenga", "登革热疫苗"),
    _d("cholera vaccine live", "J07AE02", "vaxchora"),
)  # fmt: skip

_ATC = re.compile(r"^[A-Z]\d\d(?:[A-Z](?:[A-Z](?:\d\d)?)?)?$")
_PARTS = re.compile(r"[\s\-/+,;:()\[\]&*%]+")


def parts_of(text: str) -> tuple[str, ...]:
    """The word parts of a drug name: split at spaces, hyphens, slashes, '+', punctuation."""
    return tuple(p for p in _PARTS.split(normalise(text)) if p)


def is_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


_BY_PARTS: dict[tuple[str, ...], str] = {}
_BY_CJK: dict[str, str] = {}
for _drug in DRUGS:
    for _spelling in (_drug.name, *_drug.names):
        if is_cjk(_spelling):
            _BY_CJK[normalise(_spelling)] = _drug.name
        else:
            _BY_PARTS[parts_of(_spelling)] = _drug.name
_CJK_LONGEST_FIRST = sorted(_BY_CJK, key=len, reverse=True)
_LONGEST_PARTS = max(len(k) for k in _BY_PARTS)
ATC_OF: dict[str, tuple[str, ...]] = {d.name: d.atc for d in DRUGS}


# A misspelt name: the INN as German, Dutch and Nordic leaflets write it ("Prednison",
# "Dexamethason") or a typing error ("Predisone"). A word of at least this many letters
# one edit (a letter added, dropped or changed) from exactly one drug's single-word name,
# and from no other drug's, is that drug; shorter words are too close to each other.
FUZZY_MIN_LETTERS = 8
_SINGLE_WORDS: dict[str, str] = {
    key[0]: name
    for key, name in _BY_PARTS.items()
    if len(key) == 1 and len(key[0]) >= FUZZY_MIN_LETTERS - 1 and key[0].isalpha()
}


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one inserted, deleted or changed letter."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    at = next((i for i, (x, y) in enumerate(zip(short, long_, strict=False)) if x != y), len(short))
    return short[at:] == long_[at + 1 :]


@lru_cache(maxsize=4096)
def near_name(word: str) -> str | None:
    """The one known drug a misspelt word names (see FUZZY_MIN_LETTERS), else None."""
    if len(word) < FUZZY_MIN_LETTERS or not word.isascii() or not word.isalpha():
        return None
    found = {name for spelling, name in _SINGLE_WORDS.items() if _one_edit(word, spelling)}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class Identified:
    """What Vigil reads in a drug as sent: the known drugs it names (by INN), the ATC
    codes (sent, and the known drugs'), its word parts, and its text for Chinese stems."""

    names: tuple[str, ...]
    atc: tuple[str, ...]
    parts: tuple[str, ...]
    text: str


def names_in(text: str) -> tuple[str, ...]:
    """The known drugs a drug as sent names, in the order they appear."""
    found: list[tuple[int, str]] = []
    parts = parts_of(text)
    at = 0
    while at < len(parts):
        for size in range(min(_LONGEST_PARTS, len(parts) - at), 0, -1):
            name = _BY_PARTS.get(parts[at : at + size])
            if name:
                found.append((at, name))
                at += size
                break
        else:
            near = near_name(parts[at])
            if near is not None:
                found.append((at, near))
            at += 1
    key = normalise(text)
    if is_cjk(key):
        taken = [False] * len(key)
        for spelling in _CJK_LONGEST_FIRST:
            start = key.find(spelling)
            while start >= 0:
                end = start + len(spelling)
                if not any(taken[start:end]):
                    taken[start:end] = [True] * len(spelling)
                    found.append((len(parts) + start, _BY_CJK[spelling]))
                start = key.find(spelling, end)
    return tuple(dict.fromkeys(name for _, name in sorted(found)))


# Drugs the pack's rules count as US Core and SNOMED CT senders code them, without a
# display or text (FHIR R4 Coding.display and CodeableConcept.text are 0..1; US Core binds
# medication[x] to RxNorm). Sources: NLM RxNorm (RxNav, RXCUI of the ingredient, TTY IN;
# 312617 is the clinical drug "predniSONE 20 MG Oral Tablet", TTY SCD); SNOMED CT
# International, substance hierarchy (the "(substance)" concepts). A code not here is no
# drug Vigil knows: the record is kept with the code as its drug, as an unknown name is.
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
CODED_DRUGS: dict[tuple[str, str], str] = {
    **{(RXNORM, code): name for code, name in (
        ("8640", "prednisone"), ("312617", "prednisone"), ("8638", "prednisolone"),
        ("6902", "methylprednisolone"), ("3264", "dexamethasone"),
        ("5492", "hydrocortisone"), ("1514", "betamethasone"), ("10759", "triamcinolone"),
        ("2878", "cortisone"), ("5521", "hydroxychloroquine"),
        ("3002", "cyclophosphamide"), ("121191", "rituximab"),
    )},
    **{(SNOMED, code): name for code, name in (
        ("116602009", "prednisone"), ("116601002", "prednisolone"),
        ("116593003", "methylprednisolone"), ("372584003", "dexamethasone"),
        ("373540008", "hydroxychloroquine"), ("387420009", "cyclophosphamide"),
        ("386919002", "rituximab"),
    )},
}  # fmt: skip


def coded_drug(text: str) -> str | None:
    """The known drug a coded drug as recorded names ("<system>|<code>", as FHIR ingest
    records a drug sent only as a code), else None."""
    system, mark, code = text.strip().rpartition("|")
    return CODED_DRUGS.get((system, code)) if mark else None


# per medication per medication rule on every walk, and a subject's few drugs each time
@lru_cache(maxsize=4096)
def identify(drug: str, code: str | None) -> Identified:
    coded = coded_drug(drug)
    names = (coded,) if coded else names_in(drug)
    codes = [code.strip().upper()] if code and _ATC.match(code.strip().upper()) else []
    codes += [c for name in names for c in ATC_OF.get(name, ())]
    return Identified(names, tuple(dict.fromkeys(codes)), parts_of(drug), normalise(drug))


def known(name: str) -> bool:
    return name in ATC_OF
