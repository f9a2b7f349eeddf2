"""YAML as the study files, rule packs and test data are read: the safe loader, on libyaml
when PyYAML was built with it (the wheels are). The pure-Python parser takes about 0.3 s
of CPU for a study's 65 kB rules.yaml, read at every start of each service; libyaml a
tenth of that, with the same safe constructors (plain data only) and the same result."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """The document in ``text`` as plain data; yaml.YAMLError when it is not YAML."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506  # a safe loader
