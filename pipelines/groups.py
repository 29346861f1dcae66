"""Packing a converter's work units into groups: one group = one read task = one output shard."""
from __future__ import annotations

from dataclasses import dataclass, field

from vlaflow.converters import WorkUnit

from .layout import shard_path


@dataclass
class Group:
    id: int  # global, deterministic: the position in the plan
    dataset: str
    split: str
    index: int  # shard index within (dataset, split)
    units: list[WorkUnit] = field(default_factory=list)
    nbytes: int = 0

    @property
    def shard(self) -> str:
        return shard_path(self.dataset, self.split, self.index)


def pack(units: list[WorkUnit], dataset: str, target_bytes: int) -> list[Group]:
    """Consecutive units of one split share a group until it reaches ``target_bytes``."""
    groups: list[Group] = []
    per_split: dict[str, int] = {}
    current: Group | None = None
    for u in units:
        if current is None or current.split != u.split or (
                current.units and current.nbytes + u.nbytes > target_bytes):
            idx = per_split.get(u.split, 0)
            per_split[u.split] = idx + 1
            current = Group(len(groups), dataset, u.split, idx)
            groups.append(current)
        current.units.append(u)
        current.nbytes += u.nbytes
    return groups
