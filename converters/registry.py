"""Converter discovery through the ``vlaflow.converters`` entry-point group (built-ins included)."""
from __future__ import annotations

from importlib.metadata import entry_points

from vlaflow.schemas import InputError

from .base import Converter, option_help

GROUP = "vlaflow.converters"


def available() -> dict[str, object]:
    """name -> entry point, not yet loaded (a broken plugin must not break listing the others)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def sniff(input_path: str) -> str:
    """The one installed converter whose ``sniff`` accepts ``input_path`` (``--converter auto``)."""
    hits = []
    for name, ep in sorted(available().items()):
        try:
            cls = ep.load()
            if cls.sniff(input_path):
                hits.append(name)
        except Exception:  # a broken plugin must not break detection for the others
            continue
    if not hits:
        raise InputError(f"--converter auto: no installed converter recognizes {input_path}")
    if len(hits) > 1:
        raise InputError(f"--converter auto: {input_path} matches several converters {hits}; name one")
    return hits[0]


def load(name: str) -> type[Converter]:
    eps = available()
    if name not in eps:
        raise InputError(f"unknown converter {name!r}; installed: {', '.join(sorted(eps)) or 'none'}")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Converter)):
        raise InputError(f"entry point {name!r} ({eps[name].value}) is not a vlaflow Converter class")
    return cls


def describe() -> list[dict]:
    rows = []
    for name, ep in sorted(available().items()):
        try:
            cls = ep.load()
            rows.append({"name": name, "version": getattr(cls, "version", "?"), "target": ep.value,
                         "description": getattr(cls, "description", ""), "options": option_help(cls.Options),
                         "error": ""})
        except Exception as err:  # report, keep listing
            rows.append({"name": name, "version": "?", "target": ep.value, "description": "", "options": [],
                         "error": f"{type(err).__name__}: {err}"})
    return rows
