"""Names and relative paths taken from data, made safe before they become ids or path components."""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(name, limit: int = 128) -> str:
    """A path/id component from data (dataset, split, episode names): no separators, no dot-dot, bounded."""
    return (_UNSAFE.sub("_", str(name)).strip("._") or "_")[:limit]


def is_safe_rel(rel) -> bool:
    """A relative path read from data (manifest, frame references) that stays inside its root."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or "\\" in rel or ":" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def natural_key(name: str):
    """demo_2 < demo_10; traj_9 < traj_10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
