"""Splitting inputs into work units by size, the one way every converter does it.

A unit's ``nbytes`` is what the pipeline packs into shards, so it should track the bytes a unit reads
(or, where reading is not bytes, the bytes it writes: an estimate per record is enough).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import WorkUnit


def pack_ranges(costs: Sequence[int], target_bytes: int, keys: Sequence | None = None) -> list[tuple[int, int, int]]:
    """Contiguous ``(start, stop, bytes)`` ranges over items in order: a range closes before the item that would
    take it past ``target_bytes`` (an item above the target is a range of its own) and, given ``keys``, where
    the key changes (e.g. the video a record reads)."""
    out, start, acc = [], 0, 0
    for i, cost in enumerate(costs):
        if i > start and (acc + cost > target_bytes or (keys is not None and keys[i] != keys[i - 1])):
            out.append((start, i, acc))
            start, acc = i, 0
        acc += cost
    if len(costs) > start:
        out.append((start, len(costs), acc))
    return out


def record_units(source: str, split: str, costs: Sequence[int], target_bytes: int, *, keys: Sequence | None = None,
                 file_index: int = 0, payload: Any = None) -> list[WorkUnit]:
    """One file of records with a cost each (``pack_ranges``); the last unit runs to the end of the file, so
    records past the listing (a file that grew, a bad tail) are still read and reported."""
    ranges = pack_ranges(costs, target_bytes, keys)
    return [WorkUnit(source, split, a, None if b == len(costs) else b, acc, 0, file_index, payload)
            for a, b, acc in ranges]


def file_units(source: str, split: str, nbytes: int, count: int | None, target_bytes: int, *, file_index: int = 0,
               payload: Any = None) -> list[WorkUnit]:
    """One file of ``count`` records and ``nbytes`` bytes: the whole file when it fits ``target_bytes`` (or its
    records are not countable), else even record ranges, each charged its share of the bytes."""
    if not count or nbytes <= target_bytes:
        return [WorkUnit(source, split, 0, None, nbytes, 0, file_index, payload)]
    per = max(1, count * target_bytes // nbytes)
    return [WorkUnit(source, split, a, None if min(count, a + per) == count else a + per,
                     max(1, nbytes * (min(count, a + per) - a) // count), 0, file_index, payload)
            for a in range(0, count, per)]
