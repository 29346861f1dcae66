"""Dataset specs (YAML) and the one function that applies them to an episode's step arrays.

A spec says, as data, which source key fills which named slot, through which named transforms
(``transforms.transform_table``) and from which rotation representation. Shared by every converter
whose sources are arrays keyed by name (RLDS, HDF5 sim logs). A user's ``--spec`` is read once on the
driver (``load_spec_file``) and travels to workers as a plain dict; ``spec_to_dict`` writes the spec a
converter actually used back as such a dict.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vlaflow.schemas import ACTION, STATE, FeatureMismatch, SpecError, parse_fps
from vlaflow.schemas.columns import CAMERA_ROLES, TASK_FAMILIES
from vlaflow.schemas.embodiment import read_yaml
from vlaflow.schemas.rotations import REPRS, to_rotvec

from .transforms import transform_table

_KEYS = ("dataset", "aliases", "embodiment", "task_family", "fps", "license", "cameras", "image_transform",
         "depth_unit", "instruction", "language", "conventions", "derive", "action", "state", "state_raw_keys", "drop",
         "notes")

# Float depth tensors become 16-bit PNGs in millimetres; ``depth_unit`` says what the floats measure.
DEPTH_UNITS_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}

_ROT_WIDTH = {"rotvec": 3, "euler_xyz": 3, "quat_xyzw": 4, "quat_wxyz": 4}


@dataclass
class SlotMap:
    slot: str
    key: str
    index: tuple[int, int] | None = None
    rotation: str | None = None
    offset: int = 0


@dataclass
class Derive:
    out: str
    fn: str
    input: str
    index: tuple[int, int] | None = None
    params: dict = field(default_factory=dict)


@dataclass
class DatasetSpec:
    dataset: str
    embodiment: str
    aliases: list[str] = field(default_factory=list)
    task_family: str = "manipulation"
    fps: Fraction = Fraction(10)
    license: str = "unknown"
    cameras: dict[str, str] = field(default_factory=dict)
    image_transform: str = "none"
    depth_unit: str = "m"
    instruction_keys: list[str] = field(default_factory=list)
    instruction_encoding: str = "utf8"
    language: str = "en"
    conventions: dict = field(default_factory=dict)
    derive: list[Derive] = field(default_factory=list)
    action: list[SlotMap] = field(default_factory=list)
    state: list[SlotMap] = field(default_factory=list)
    state_raw_keys: list[str] | None = None
    drop: dict[str, str] = field(default_factory=dict)  # source key -> why it is not carried (else: raw table)
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def action_slots(self) -> list[str]:
        return [m.slot for m in self.action]


def _index(v, where: str) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v + 1)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    raise SpecError(f"{where}: index must be an int or [start, stop], got {v!r}")


def _mapping(d: dict, key: str, source: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise SpecError(f"{source}: {key}: expected a mapping, got {v!r:.60}")
    return v


def _entries(d: dict, key: str, source: str, needs: tuple[str, ...]) -> list[dict]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{source}: {key}: expected a list, got {v!r:.60}")
    for i, e in enumerate(v):
        missing = [k for k in needs if not isinstance(e, dict) or not isinstance(e.get(k), str)]
        if missing:
            raise SpecError(f"{source}: {key}[{i}]: needs {' and '.join(repr(k) for k in needs)} (strings); "
                            f"missing or not a string: {missing[0]!r}")
    return v


def _slot_maps(entries: list[dict], layout, where: str) -> list[SlotMap]:
    out = []
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        if e["slot"] not in layout:
            raise SpecError(f"{w}: unknown {layout.kind} slot {e['slot']!r}")
        rot = e.get("rotation")
        if rot is not None and rot not in REPRS:
            raise SpecError(f"{w}: rotation {rot!r} not in {REPRS}")
        offset = e.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise SpecError(f"{w}: offset must be a non-negative int, got {offset!r}")
        out.append(SlotMap(e["slot"], e["key"], _index(e.get("index"), w), rot, offset))
    return out


def spec_from_dict(d: dict, source: str = "<dict>") -> DatasetSpec:
    """Parse and check a dataset spec; every error is one line naming ``source`` and the key."""
    if not isinstance(d, dict):
        raise SpecError(f"{source}: a dataset spec must be a mapping of keys, got {d!r:.60}")
    for k in ("dataset", "embodiment"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise SpecError(f"{source}: {k}: missing or not a string (a dataset spec needs 'dataset' and "
                            "'embodiment')")
    unknown = sorted(set(d) - set(_KEYS), key=str)
    if unknown:
        raise SpecError(f"{source}: {unknown[0]}: unknown key (known: {', '.join(_KEYS)})")
    fam = d.get("task_family", "manipulation")
    if fam not in TASK_FAMILIES:
        raise SpecError(f"{source}: task_family: {fam!r} not in {TASK_FAMILIES}")
    try:
        fps = parse_fps(d.get("fps", 10))
    except (ValueError, TypeError, ZeroDivisionError, IndexError, SpecError) as err:
        raise SpecError(f"{source}: fps: {err}") from None
    cams = _mapping(d, "cameras", source)
    for role, key in cams.items():
        if role not in CAMERA_ROLES:
            raise SpecError(f"{source}: cameras: unknown camera role {role!r}; roles: {CAMERA_ROLES}")
        if not isinstance(key, str):
            raise SpecError(f"{source}: cameras.{role}: expected a source key (string), got {key!r:.60}")
    table = transform_table()
    derive = []
    for i, e in enumerate(_entries(d, "derive", source, ("out", "fn", "input"))):
        if e["fn"] not in table:
            near = difflib.get_close_matches(e["fn"], list(table), n=1)
            raise SpecError(f"{source}: derive[{i}].fn: unknown transform {e['fn']!r}; "
                            + (f"did you mean {near[0]!r}?" if near else f"known: {', '.join(sorted(table))}"))
        params = e.get("params") or {}
        if not isinstance(params, dict):
            raise SpecError(f"{source}: derive[{i}].params: expected a mapping, got {params!r:.60}")
        derive.append(Derive(e["out"], e["fn"], e["input"], _index(e.get("index"), f"{source}: derive[{i}]"),
                             dict(params)))
    instr = _mapping(d, "instruction", source)
    keys = instr.get("keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise SpecError(f"{source}: instruction.keys: expected a list of source keys, got {keys!r:.60}")
    if instr.get("encoding", "utf8") not in ("utf8", "codepoints"):
        raise SpecError(f"{source}: instruction.encoding: must be utf8 or codepoints")
    raw_keys = d.get("state_raw_keys")
    if raw_keys is not None and (not isinstance(raw_keys, list) or not all(isinstance(k, str) for k in raw_keys)):
        raise SpecError(f"{source}: state_raw_keys: expected a list of source keys, got {raw_keys!r:.60}")
    notes = d.get("notes") or []
    aliases = d.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise SpecError(f"{source}: aliases: expected a list of dataset names, got {aliases!r:.60}")
    drop = d.get("drop") or {}
    if not isinstance(drop, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in drop.items()):
        raise SpecError(f"{source}: drop: expected a mapping of source key -> reason, got {drop!r:.60}")
    depth_unit = d.get("depth_unit", "m")
    if depth_unit not in DEPTH_UNITS_MM:
        raise SpecError(f"{source}: depth_unit: {depth_unit!r} not in {sorted(DEPTH_UNITS_MM)}")
    return DatasetSpec(
        dataset=d["dataset"], embodiment=d["embodiment"], aliases=list(aliases), task_family=fam, fps=fps,
        license=str(d.get("license", "unknown")), cameras=dict(cams),
        image_transform=str(d.get("image_transform", "none")), depth_unit=depth_unit,
        instruction_keys=list(keys), instruction_encoding=instr.get("encoding", "utf8"),
        language=str(d.get("language", "en")), conventions=dict(_mapping(d, "conventions", source)),
        derive=derive,
        action=_slot_maps(_entries(d, "action", source, ("slot", "key")), ACTION, f"{source}: action"),
        state=_slot_maps(_entries(d, "state", source, ("slot", "key")), STATE, f"{source}: state"),
        state_raw_keys=raw_keys, drop=dict(drop), notes=[notes] if isinstance(notes, str) else list(notes),
        source=source,
    )


def spec_to_dict(spec: DatasetSpec) -> dict:
    """Plain data (YAML-safe) that ``spec_from_dict`` reads back into an equal spec."""
    def index(ix):
        return {} if ix is None else {"index": list(ix)}

    def slot_map(m: SlotMap) -> dict:
        return {"slot": m.slot, "key": m.key, **index(m.index), **({"rotation": m.rotation} if m.rotation else {}),
                **({"offset": m.offset} if m.offset else {})}

    d = {"dataset": spec.dataset, **({"aliases": list(spec.aliases)} if spec.aliases else {}),
         "embodiment": spec.embodiment, "task_family": spec.task_family,
         "fps": spec.fps.numerator if spec.fps.denominator == 1 else str(spec.fps), "license": spec.license,
         "cameras": dict(spec.cameras), "image_transform": spec.image_transform, "depth_unit": spec.depth_unit,
         "instruction": {"keys": list(spec.instruction_keys), "encoding": spec.instruction_encoding},
         "language": spec.language, "conventions": copy.deepcopy(spec.conventions),
         "derive": [{"out": x.out, "fn": x.fn, "input": x.input, **index(x.index),
                     **({"params": copy.deepcopy(x.params)} if x.params else {})} for x in spec.derive],
         "action": [slot_map(m) for m in spec.action], "state": [slot_map(m) for m in spec.state],
         "notes": list(spec.notes)}
    if spec.state_raw_keys is not None:
        d["state_raw_keys"] = list(spec.state_raw_keys)
    if spec.drop:
        d["drop"] = dict(spec.drop)
    return d


def load_spec(path: str | Path) -> DatasetSpec:
    return spec_from_dict(read_yaml(path, "dataset spec"), source=str(path))


def load_spec_file(path: str | Path) -> dict:
    """A user's ``--spec`` YAML, checked here (one-line errors) and returned as plain data for workers."""
    return spec_to_dict(load_spec(path))


def load_spec_dir(path: str | Path) -> dict[str, DatasetSpec]:
    """name -> spec, for each spec's ``dataset`` and each of its ``aliases`` (a name claimed twice is an error)."""
    specs: dict[str, DatasetSpec] = {}
    for p in sorted(Path(path).glob("*.yaml")):
        s = load_spec(p)
        for name in (s.dataset, *s.aliases):
            if name in specs and specs[name] is not s:
                raise SpecError(f"{p}: dataset name {name!r} is already claimed by {specs[name].source}")
            specs[name] = s
    return specs


def _take(steps: dict[str, np.ndarray], key: str, index, t: int, where: str) -> np.ndarray:
    if key not in steps:
        raise FeatureMismatch(f"{where}: source key {key!r} missing (have {sorted(steps)[:12]}...)")
    v = np.asarray(steps[key])
    if v.dtype == object or v.dtype.kind in "SU":
        raise FeatureMismatch(f"{where}: source key {key!r} is not numeric")
    v = v.reshape(t, -1).astype(np.float64)
    if index is not None:
        a, b = index
        if b > v.shape[1]:
            raise FeatureMismatch(f"{where}: {key!r} has {v.shape[1]} values per step, spec reads [{a}:{b}]")
        v = v[:, a:b]
    return v


def derive_keys(steps: dict[str, np.ndarray], spec: DatasetSpec, t: int) -> dict[str, np.ndarray]:
    """Trajectory-level transforms: add each derived key to a copy of ``steps``."""
    steps = dict(steps)
    for d in spec.derive:
        x = _take(steps, d.input, d.index, t, f"{spec.dataset}: derive {d.out}")
        steps[d.out] = np.asarray(transform_table()[d.fn](x, **d.params)).reshape(t, -1)
    return steps


def fill_slots(steps: dict[str, np.ndarray], maps: list[SlotMap], layout, t: int, where: str):
    """Write source values into the padded vector; returns (values [T, W] float32, mask [W])."""
    values = np.zeros((t, layout.width), dtype=np.float32)
    mask = np.zeros(layout.width, dtype=bool)
    for m in maps:
        v = _take(steps, m.key, m.index, t, where)
        if m.rotation:
            if v.shape[1] != _ROT_WIDTH[m.rotation]:
                raise FeatureMismatch(f"{where}: {m.slot} from {m.key!r}: {m.rotation} needs "
                                      f"{_ROT_WIDTH[m.rotation]} values, got {v.shape[1]}")
            v = to_rotvec(v, m.rotation)
        a, b = layout.range(m.slot)
        lo, hi = a + m.offset, a + m.offset + v.shape[1]
        if hi > b:
            raise FeatureMismatch(f"{where}: {m.slot} holds {b - a} values, spec writes {v.shape[1]} "
                                  f"at offset {m.offset}")
        values[:, lo:hi] = v
        mask[lo:hi] = True
    return values, mask


def last_action_invalid(spec: DatasetSpec) -> bool:
    """True when a derive step (e.g. relabel_from_state) leaves the final action undefined."""
    used = {d.out for d in spec.derive if getattr(transform_table()[d.fn], "invalidates_last", False)}
    return any(m.key in used for m in spec.action)


def standardize(steps: dict[str, np.ndarray], spec: DatasetSpec, t: int):
    """→ action [T, A], action_mask [A], state [T, S], state_mask [S] (all float32 / bool)."""
    steps = derive_keys(steps, spec, t)
    action, amask = fill_slots(steps, spec.action, ACTION, t, f"{spec.dataset}: action")
    state, smask = fill_slots(steps, spec.state, STATE, t, f"{spec.dataset}: state")
    return action, amask, state, smask
