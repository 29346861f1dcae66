"""Mergeable statistics of the padded ``action``/``state``/``trajectory`` vectors, per (dataset, embodiment).

Everything here merges: statistics of a shard, a block, a worker or a whole corpus combine into the
statistics of their union, so a distributed pass needs no second read and no raw values on the driver.

- ``LayoutStats``: moments of every position of one layout plus one KLL sketch per position that has
  data; ``GroupStats``: action + state + trajectory stats of one (dataset, embodiment);
  ``StatsAccumulator``: all groups, merged, and rendered as the ``stats.json`` document (docs/stats.md).
- ``StatsAccumulator.to_bytes``/``from_bytes``: a partial saved as a NumPy ``.npz`` (read with
  ``allow_pickle=False``, so a file can never run code) holding every group's exact state; the
  restored accumulator merges and continues exactly as the live one. ``merge_partials`` combines saved
  partials, e.g. two corpora's, into one document without reading their data again.
"""
from __future__ import annotations

import copy
import io
import json
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from vlaflow.schemas import ACTION, SCHEMA_VERSION, STATE, TRAJECTORY, InputError, Layout

from .kll import PACKED_FIELDS, KLLSketch, pack_sketches, unpack_sketches
from .moments import Moments
from .spec import STATS_VERSION, StatsSpec, quantile_key

PARTIAL_FORMAT = "vlaflow.stats_partial"
LAYOUTS = {"action": ACTION, "state": STATE, "trajectory": TRAJECTORY}


class LayoutStats:
    """Statistics of every position of one layout (``ACTION`` or ``STATE``) in one group."""

    def __init__(self, layout: Layout, spec: StatsSpec, seed: int = 0):
        self.layout, self.spec, self.seed = layout, spec, seed
        self.keep = spec.keep(layout)
        self.moments = Moments(layout.width)
        self.sketches: dict[int, KLLSketch] = {}

    def update(self, values: np.ndarray, mask: np.ndarray) -> None:
        """``values``/``mask`` [N, width]; the spec's exclusions are applied here."""
        mask = np.asarray(mask, bool) & self.keep
        if not mask.any():
            return
        self.moments.merge(Moments.of(values, mask))
        for d in np.flatnonzero(mask.any(0)):
            col = mask[:, d]
            v = values[:, d] if col.all() else values[col, d]
            sk = self.sketches.get(d)
            if sk is None:
                sk = self.sketches[d] = KLLSketch(self.spec.k, self.spec.exact_limit, seed=self.seed * 7919 + d)
            sk.update(v)

    def merge(self, other: "LayoutStats") -> "LayoutStats":
        self.moments.merge(other.moments)
        for d, sk in other.sketches.items():
            if d in self.sketches:
                self.sketches[d].merge(sk)
            else:
                self.sketches[d] = sk
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """The exact state as named arrays: moments, the sketched positions, their packed sketches."""
        pos = sorted(int(d) for d in self.sketches)
        out = {f"moments.{k}": v for k, v in self.moments.arrays().items()}
        out["positions"] = np.array(pos, np.int64)
        out.update({f"sketch.{k}": v for k, v in pack_sketches([self.sketches[d] for d in pos]).items()})
        return out

    @classmethod
    def from_arrays(cls, layout: Layout, spec: StatsSpec, seed: int, get) -> "LayoutStats":
        """Inverse of ``arrays``; ``get(name)`` returns one array (they come from a file: checked)."""
        ls = cls(layout, spec, seed)
        ls.moments = Moments.from_arrays({k: get(f"moments.{k}") for k in Moments.__slots__}, layout.width)
        pos = np.asarray(get("positions"))
        if pos.dtype != np.int64 or pos.ndim != 1 or len(np.unique(pos)) != len(pos) \
                or ((pos < 0) | (pos >= layout.width)).any():
            raise ValueError(f"{layout.kind}: sketch positions are not distinct positions of the layout")
        sketches = unpack_sketches({k: get(f"sketch.{k}") for k in PACKED_FIELDS}, spec.k, spec.exact_limit)
        if len(sketches) != len(pos):
            raise ValueError(f"{layout.kind}: {len(sketches)} sketches for {len(pos)} positions")
        ls.sketches = dict(zip(pos.tolist(), sketches))
        return ls

    def to_json(self) -> dict:
        """{slot: {start, width, count[], mean[], std[], min[], max[], q01[] ...}}; null where a
        position of a listed slot has no values (e.g. the 7th joint of a 6-DoF arm)."""
        m, qs = self.moments, self.spec.quantiles
        qv = np.full((self.layout.width, len(qs)), np.nan)
        for d, sk in self.sketches.items():
            qv[d] = sk.quantiles(qs)
        out = {}
        for s in self.layout.slots:
            a, b = self.layout.range(s.name)
            if not m.count[a:b].any():
                continue
            has = m.count[a:b] > 0

            def f(arr, has=has):
                return [float(x) if h else None for x, h in zip(arr, has)]

            entry = {"start": a, "width": s.width, "unit": s.unit, "count": [int(c) for c in m.count[a:b]],
                     "mean": f(m.mean[a:b]), "std": f(m.std[a:b]), "min": f(m.min[a:b]), "max": f(m.max[a:b])}
            for j, q in enumerate(qs):
                entry[quantile_key(q)] = f(qv[a:b, j])
            entry["exact_quantiles"] = all(self.sketches[d].exact for d in range(a, b) if d in self.sketches)
            out[s.name] = entry
        return out


class GroupStats:
    """Action and state statistics of one (dataset, embodiment), plus row/episode counts."""

    def __init__(self, dataset: str, embodiment: str, spec: StatsSpec, seed: int = 0):
        self.dataset, self.embodiment, self.spec, self.seed = dataset, embodiment, spec, seed
        self.rows = self.episodes = self.action_rows = 0
        self.action = LayoutStats(ACTION, spec, seed)
        self.state = LayoutStats(STATE, spec, seed + 1)
        # trajectory targets: one value per slot position, pooled over the horizon steps
        self.trajectory = LayoutStats(TRAJECTORY, spec, seed + 2)

    def update(self, action, action_mask, action_valid, state, state_mask, is_first=None,
               trajectory=None, trajectory_mask=None) -> None:
        action_valid = np.asarray(action_valid, bool)
        self.rows += len(action_valid)
        self.action_rows += int(action_valid.sum())
        if is_first is not None:
            self.episodes += int(np.asarray(is_first, bool).sum())
        self.action.update(action, np.asarray(action_mask, bool) & action_valid[:, None])
        self.state.update(state, state_mask)
        if trajectory is not None and len(trajectory):
            w = TRAJECTORY.width
            self.trajectory.update(np.asarray(trajectory).reshape(-1, w), np.asarray(trajectory_mask).reshape(-1, w))

    def merge(self, other: "GroupStats") -> "GroupStats":
        self.rows += other.rows
        self.episodes += other.episodes
        self.action_rows += other.action_rows
        self.action.merge(other.action)
        self.state.merge(other.state)
        self.trajectory.merge(other.trajectory)
        return self

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "embodiment": self.embodiment, "rows": self.rows,
                "episodes": self.episodes, "action_rows": self.action_rows,
                "action": self.action.to_json(), "state": self.state.to_json(),
                "trajectory": self.trajectory.to_json()}


def group_key(dataset: str, embodiment: str) -> str:
    return f"{dataset}/{embodiment}"


@dataclass
class StatsAccumulator:
    """All groups of a pass; ``merge`` partials in any grouping, save them with ``to_bytes``, render ``to_json``."""

    spec: StatsSpec = field(default_factory=StatsSpec)
    seed: int = 0
    groups: dict[str, GroupStats] = field(default_factory=dict)

    def group(self, dataset: str, embodiment: str) -> GroupStats:
        key = group_key(dataset, embodiment)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = GroupStats(dataset, embodiment, self.spec, self.seed * 1009 + len(self.groups))
        return g

    def update(self, dataset: str, embodiment: str, **arrays) -> None:
        self.group(dataset, embodiment).update(**arrays)

    def update_rows(self, datasets, embodiments, action, action_mask, action_valid, state, state_mask,
                    is_first=None, trajectory=None, trajectory_mask=None) -> None:
        """Rows of mixed groups: ``datasets``/``embodiments`` hold one name per row; ``trajectory`` (optional)
        [N, H, width] with its mask (rows without targets fully masked)."""
        datasets, embodiments = np.asarray(datasets, object), np.asarray(embodiments, object)
        pairs = sorted(set(zip(datasets.tolist(), embodiments.tolist())))
        for ds, emb in pairs:
            sel = (datasets == ds) & (embodiments == emb)
            if len(pairs) == 1:
                sel = slice(None)
            self.group(ds, emb).update(action[sel], action_mask[sel], np.asarray(action_valid)[sel], state[sel],
                                       state_mask[sel], None if is_first is None else np.asarray(is_first)[sel],
                                       None if trajectory is None else trajectory[sel],
                                       None if trajectory is None else trajectory_mask[sel])

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        if other.spec != self.spec:
            raise ValueError("cannot merge statistics computed under different specs")
        for key in sorted(other.groups):
            g = other.groups[key]
            if key in self.groups:
                self.groups[key].merge(g)
            else:
                self.groups[key] = g
        return self

    def per_group(self) -> dict[str, "StatsAccumulator"]:
        """One accumulator per (dataset, embodiment) group, sharing its state (no copies): what is saved
        as one partial per group, so any set of groups can be merged later."""
        return {key: StatsAccumulator(self.spec, self.seed, {key: g}) for key, g in self.groups.items()}

    def by_embodiment(self) -> dict[str, GroupStats]:
        """Groups of one embodiment merged across datasets (their sketches merge exactly as shards do)."""
        out: dict[str, GroupStats] = {}
        for key in sorted(self.groups):
            g = self.groups[key]
            if g.embodiment in out:
                out[g.embodiment].merge(copy.deepcopy(g))
                out[g.embodiment].dataset += "," + g.dataset
            else:
                out[g.embodiment] = copy.deepcopy(g)
        return out

    def to_json(self) -> dict:
        embs = {}
        for emb, g in self.by_embodiment().items():
            d = g.to_json()
            d.pop("dataset")
            d["datasets"] = g.dataset.split(",")
            embs[emb] = d
        return {"stats_version": STATS_VERSION, "schema_version": SCHEMA_VERSION, "spec": self.spec.to_json(),
                "quantile_keys": [quantile_key(q) for q in self.spec.quantiles],
                "groups": {k: self.groups[k].to_json() for k in sorted(self.groups)}, "embodiments": embs}

    def to_bytes(self) -> bytes:
        """This partial as a deterministic ``.npz``: a JSON header (format, versions, spec, seeds, group
        keys and counts) and every group's moments and sketch levels; ``from_bytes`` restores it exactly."""
        header = {"format": PARTIAL_FORMAT, "stats_version": STATS_VERSION, "schema_version": SCHEMA_VERSION,
                  "spec": self.spec.to_json(), "seed": int(self.seed), "groups": []}
        arrays = {}
        for i, (key, g) in enumerate(self.groups.items()):
            header["groups"].append({"key": key, "dataset": g.dataset, "embodiment": g.embodiment, "seed": int(g.seed),
                                     "rows": g.rows, "episodes": g.episodes, "action_rows": g.action_rows})
            for kind in LAYOUTS:
                arrays.update({f"g{i}.{kind}.{name}": a for name, a in getattr(g, kind).arrays().items()})
        return _npz_bytes({"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8), **arrays})

    @classmethod
    def from_bytes(cls, data: bytes, spec: StatsSpec | None = None,
                   source: str = "statistics partial") -> "StatsAccumulator":
        """A partial saved by ``to_bytes``. Refused with a one-line ``InputError`` naming ``source``: a
        file that is not one, another stats or schema version, or (when ``spec`` is given) another spec."""
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with npz:
                header = json.loads(bytes(npz["header"]).decode())
                if not isinstance(header, dict) or header.get("format") != PARTIAL_FORMAT:
                    raise ValueError(f"no {PARTIAL_FORMAT} header")
                if header.get("stats_version") != STATS_VERSION:
                    raise InputError(f"{source}: stats_version {header.get('stats_version')!r}, this vlaflow reads "
                                     f"{STATS_VERSION}; recompute it with `vlaflow stats`")
                if header.get("schema_version") != SCHEMA_VERSION:
                    raise InputError(f"{source}: computed on schema {header.get('schema_version')!r}, this vlaflow "
                                     f"has {SCHEMA_VERSION}; recompute it with `vlaflow stats`")
                saved = StatsSpec.from_json(header["spec"])
                if spec is not None and saved != spec:
                    diff = ", ".join(f"{f.name} {getattr(saved, f.name)!r} != {getattr(spec, f.name)!r}"
                                     for f in fields(StatsSpec) if getattr(saved, f.name) != getattr(spec, f.name))
                    raise InputError(f"{source}: computed under another stats spec ({diff}); "
                                     "only partials of one spec merge")
                acc = cls(saved, int(header["seed"]))
                for i, gh in enumerate(header["groups"]):
                    ds, emb = gh["dataset"], gh["embodiment"]
                    if not (isinstance(ds, str) and isinstance(emb, str)) or gh["key"] != group_key(ds, emb) \
                            or gh["key"] in acc.groups:
                        raise ValueError(f"group {i}: key {gh['key']!r} does not match its names or repeats")
                    g = acc.groups[gh["key"]] = GroupStats(ds, emb, saved, int(gh["seed"]))
                    g.rows, g.episodes, g.action_rows = int(gh["rows"]), int(gh["episodes"]), int(gh["action_rows"])
                    for j, (kind, layout) in enumerate(LAYOUTS.items()):
                        prefix = f"g{i}.{kind}."
                        setattr(g, kind, LayoutStats.from_arrays(layout, saved, g.seed + j,
                                                                 lambda name, p=prefix: npz[p + name]))
                return acc
        except (ValueError, KeyError, TypeError, IndexError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise InputError(f"{source}: not a readable vlaflow statistics partial ({' '.join(str(err).split())})") \
                from None


def merge_partials(partials: Mapping[str, bytes] | Iterable[bytes], spec: StatsSpec | None = None) -> StatsAccumulator:
    """One accumulator from saved partials (say two corpora's), without reading their data again.

    ``partials``: blobs, or {name: blob} so that errors name the file. Every partial must share one
    spec (``spec``, else the first one's). Groups with the same (dataset, embodiment) merge as if one
    pass had read both, so the same data saved twice counts twice.
    """
    named = partials.items() if isinstance(partials, Mapping) else (
        (f"statistics partial {i + 1}", b) for i, b in enumerate(partials))
    acc = None
    for name, blob in named:
        part = StatsAccumulator.from_bytes(blob, spec, source=name)
        if acc is None:
            acc, spec = part, part.spec
        else:
            acc.merge(part)
    if acc is None:
        raise InputError("no statistics partials to merge")
    return acc


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``numpy.savez_compressed`` with fixed member timestamps, so equal partials are equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
