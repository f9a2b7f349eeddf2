"""The one settings object of the stack: the common fields of :mod:`shared.settings` and
each service's own (``services/<service>/settings.py``), every knob an environment variable
with the ``VIGIL_`` prefix."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings, WorkspaceSettings
from services.safety_rules.settings import RulesSettings
from shared.settings import CommonSettings


class VigilSettings(
    IngestSettings, RulesSettings, NotifierSettings, WorkspaceSettings, CommonSettings
):
    """The one settings class: the common fields and each service's own (they live with
    the service: services/<service>/settings.py), so every ``VIGIL_`` variable and the
    ``vigil`` CLI read one object; each service reads only what it needs."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")
