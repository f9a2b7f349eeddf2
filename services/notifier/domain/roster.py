"""A study's roster: sites, people, roles, channels, backups, routing, built from plain data
(the adapter ``services.notifier.adapters.roster_files`` reads it from the study folder)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)


class InvalidRoster(ValueError):
    """A roster failed validation; the message names the file and field."""


class Role(StrEnum):
    INVESTIGATOR = "investigator"
    SUB_INVESTIGATOR = "sub_investigator"
    MEDICAL_MONITOR = "medical_monitor"
    SAFETY_DESK = "safety_desk"
    #: keeps the study's data clean: told of data-quality issues that need a query to the
    #: site or the laboratory, not a clinical judgement (a study-level contact)
    DATA_MANAGER = "data_manager"


def role_named(name: str) -> Role | None:
    """A role from a rule pack's spelling (``medical-monitor``) or the roster's; None if unknown."""
    try:
        return Role(name.strip().lower().replace("-", "_"))
    except ValueError:
        return None


SITE_ALERT_ROLES = frozenset({Role.INVESTIGATOR, Role.SUB_INVESTIGATOR})


class EmailChannel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: EmailStr

    @property
    def kind(self) -> str:
        return "email"

    @property
    def address(self) -> str:
        return str(self.email)


class WebhookChannel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook: HttpUrl

    @property
    def kind(self) -> str:
        return "webhook"

    @property
    def address(self) -> str:
        return str(self.webhook)


ChannelSpec = EmailChannel | WebhookChannel


class Person(BaseModel):
    """One person; ``channels`` in the order they are tried, ``backup`` the person who is
    told when this one cannot be reached or does not acknowledge in time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1, description="For the roster only; never put in a message.")
    role: Role
    channels: tuple[ChannelSpec, ...] = Field(min_length=1)
    backup: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _email_shorthand(cls, data: Any) -> Any:
        """``email: x`` is short for ``channels: [{email: x}]``."""
        if isinstance(data, dict) and "email" in data:
            data = dict(data)
            data["channels"] = [{"email": data.pop("email")}, *data.get("channels", [])]
        return data

    @field_validator("role", mode="before")
    @classmethod
    def _rule_pack_spelling(cls, value: Any) -> Any:
        return value.replace("-", "_") if isinstance(value, str) else value

    @property
    def email(self) -> str | None:
        """The first e-mail address, if the person has one."""
        return next((c.address for c in self.channels if isinstance(c, EmailChannel)), None)


class Site(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str = ""
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of the site (e.g. Asia/Shanghai): times in its messages "
        "and pages are shown in it. None: the study's time zone.",
    )
    people: tuple[Person, ...]
    on_call: tuple[str, ...] = Field(
        default=(),
        description="Person ids in on-call order: a person without an explicit backup is "
        "backed up by the next one in this list.",
    )


SeverityClass = str  # "serious", "protocol-threshold" or "finding"

DEFAULT_ROUTING: dict[SeverityClass, tuple[Role, ...]] = {
    "serious": (Role.INVESTIGATOR, Role.SUB_INVESTIGATOR, Role.MEDICAL_MONITOR),
    "protocol-threshold": (Role.INVESTIGATOR, Role.SUB_INVESTIGATOR),
    "finding": (Role.INVESTIGATOR, Role.SUB_INVESTIGATOR),
}


class Digest(BaseModel):
    """Findings no protocol rule flags go, for these roles, into one message a day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roles: tuple[Role, ...] = ()
    hour_utc: int = Field(default=7, ge=0, le=23, description="When the day's digest is sent.")


class Roster(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str
    timezone: str = Field(
        default="UTC",
        description="IANA time zone for study-level contacts and sites without their own.",
    )
    routing: dict[SeverityClass, tuple[Role, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTING),
        description="Which roles are told at once, per kind of signal: serious (an SAE), "
        "protocol-threshold, finding.",
    )
    digest: Digest = Digest()
    study_contacts: tuple[Person, ...] = ()
    sites: tuple[Site, ...]

    @field_validator("routing", mode="before")
    @classmethod
    def _complete_routing(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = set(value) - set(DEFAULT_ROUTING)
            if unknown:
                raise ValueError(
                    f"unknown kind(s) {sorted(unknown)}; use {sorted(DEFAULT_ROUTING)}"
                )
            return {**DEFAULT_ROUTING, **value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Roster:
        if not self.medical_monitors():
            raise ValueError(
                "study_contacts needs at least one medical_monitor: alerts for subjects "
                "without a known site go there"
            )
        for zone in [self.timezone, *(s.timezone for s in self.sites if s.timezone)]:
            if not known_zone(zone):
                raise ValueError(f"unknown IANA time zone {zone!r}")
        ids = [p.id for p in self.everyone()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"person ids must be unique; repeated: {duplicates}")
        for person in self.everyone():
            if person.backup is not None and person.backup not in ids:
                raise ValueError(f"{person.id}: backup {person.backup!r} is not on the roster")
        for site in self.sites:
            people = {p.id for p in site.people}
            if stray := [i for i in site.on_call if i not in people]:
                raise ValueError(f"site {site.id}: on_call names people not at the site: {stray}")
        return self

    def everyone(self) -> tuple[Person, ...]:
        return self.study_contacts + tuple(p for s in self.sites for p in s.people)

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.everyone() if p.id == person_id), None)

    def site(self, site_id: str | None) -> Site | None:
        return next((s for s in self.sites if s.id == site_id), None)

    def zone(self, site_id: str | None) -> ZoneInfo:
        """The time zone a site's times are shown in: its own, else the study's."""
        site = self.site(site_id)
        return ZoneInfo(site.timezone if site is not None and site.timezone else self.timezone)

    def sites_of(self, person_id: str) -> tuple[str, ...]:
        """The sites whose people list this person."""
        return tuple(s.id for s in self.sites if any(p.id == person_id for p in s.people))

    def study_contacts_with(self, role: Role) -> tuple[Person, ...]:
        """The study-level contacts with this role."""
        return tuple(p for p in self.study_contacts if p.role == role)

    def medical_monitors(self) -> tuple[Person, ...]:
        return self.study_contacts_with(Role.MEDICAL_MONITOR)

    def data_managers(self) -> tuple[Person, ...]:
        """The study's data managers (study contacts with the role)."""
        return self.study_contacts_with(Role.DATA_MANAGER)

    def warnings(self) -> list[str]:
        """What a valid roster lacks that someone should know at start-up (logged, not
        refused: an older roster stays usable)."""
        if self.data_managers():
            return []
        return [
            "study_contacts has no data_manager: data-quality issues for the data manager "
            "(implausible values and times, missing inputs and reference ranges, medications "
            "not recognised) go to the medical monitors instead"
        ]

    def with_roles(self, site_id: str | None, roles: set[Role]) -> tuple[Person, ...]:
        """People with these roles at the site, and study-level contacts with them."""
        site = self.site(site_id)
        at_site = site.people if site is not None else ()
        return tuple(p for p in (*at_site, *self.study_contacts) if p.role in roles)

    def recipients_for(
        self,
        site_id: str | None,
        kind: SeverityClass = "protocol-threshold",
        extra: frozenset[Role] = frozenset(),
    ) -> tuple[Person, ...]:
        """Who is told about a signal of this kind at this site; the study's medical
        monitors when the site is unknown or nobody there has the roles, so that no signal
        goes to nobody."""
        roles = set(self.routing.get(kind, DEFAULT_ROUTING["protocol-threshold"])) | extra
        if self.site(site_id) is None:
            roles = {Role.MEDICAL_MONITOR} | (roles - SITE_ALERT_ROLES)
        people = self.with_roles(site_id, roles)
        if not any(p.role in SITE_ALERT_ROLES | {Role.MEDICAL_MONITOR} for p in people):
            people = (*people, *self.medical_monitors())
        return tuple(dict.fromkeys(people))

    def backup_of(self, person_id: str) -> Person | None:
        """The explicit backup, else the next person in the site's on-call order."""
        person = self.person(person_id)
        if person is None:
            return None
        if person.backup is not None:
            return self.person(person.backup)
        for site in self.sites:
            if person_id in site.on_call:
                order = site.on_call
                following = order[order.index(person_id) + 1 :] + order[: order.index(person_id)]
                return self.person(following[0]) if following else None
        return None

    def may_acknowledge(self, person_id: str, site_id: str | None) -> bool:
        """On the roster of the signal's site, or a study medical monitor."""
        if any(p.id == person_id for p in self.medical_monitors()):
            return True
        site = self.site(site_id)
        return site is not None and any(p.id == person_id for p in site.people)


def roster_from_data(raw: object, source: str) -> Roster:
    """Validate a roster given as plain data (a YAML document as read); errors name
    ``source`` (the file it came from) and each field."""
    try:
        return Roster.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise InvalidRoster(f"{source}: invalid roster: {problems}") from error


def known_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine (or tzdata) knows."""
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True
