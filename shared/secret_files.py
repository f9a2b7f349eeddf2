"""Secrets read from files: ``VIGIL_<NAME>_FILE=/run/secrets/...`` for any secret setting.

Docker and Kubernetes hand secrets to a container as files; an environment variable is
visible to anyone who may inspect the container. So every ``SecretStr`` setting (of
:class:`~shared.settings.CommonSettings` and of each service's settings, which
``services/settings.py`` composes with it) can come either from ``VIGIL_<NAME>`` or from
the file named by ``VIGIL_<NAME>_FILE`` (one trailing newline is dropped, as ``echo`` writes
one), never from both: two sources for one secret hide which one is in force.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class SecretFileError(ValueError):
    """A secret's file setting cannot be used: both forms given, or the file unreadable."""


def is_secret(field: FieldInfo) -> bool:
    """Whether a settings field holds a secret (``SecretStr``, optional or not)."""
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def secret_field_names(settings_cls: type[BaseSettings]) -> list[str]:
    return [name for name, field in settings_cls.model_fields.items() if is_secret(field)]


def read_secret_file(path: Path, variable: str) -> str:
    """The secret in ``path``, without its trailing newline; the error names ``variable``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SecretFileError(
            f"{variable}={path}: cannot read the secret file ({reason}); check the path and "
            "that this process's user may read it"
        ) from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise SecretFileError(f"{variable}={path}: the secret file is empty")
    return secret


class SecretFilesSource(PydanticBaseSettingsSource):
    """A settings source giving each secret field the content of its ``_FILE`` variable."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *,
        prefix: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._prefix = prefix.upper()
        self._environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # values are gathered in __call__; this per-field hook is not used
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in secret_field_names(self.settings_cls):
            variable = f"{self._prefix}{name.upper()}"
            file_variable = f"{variable}_FILE"
            path = self._environ.get(file_variable)
            if not path:
                continue
            if self._environ.get(variable) is not None:
                raise SecretFileError(
                    f"both {variable} and {file_variable} are set: keep one (the file is "
                    "safer: it does not show in the process environment)"
                )
            values[name] = read_secret_file(Path(path), file_variable)
        return values
