"""Which spec maps a LeRobot dataset's ``names`` to slots, and the named-key syntax specs use.

A LeRobot spec is an ordinary dataset spec (``converters.standardize``) whose ``dataset`` is a
``robot_type`` (``aliases``: its other spellings). Its keys name values by their LeRobot ``names``:
``action[shoulder_pan.pos,shoulder_lift.pos]`` is those two columns of ``action`` in that order, so a spec
survives a dataset that orders its motors differently; a bare ``action`` is the whole vector.

Resolution, in order: ``--spec``; ``--opt robot_spec=NAME``; the shipped specs whose robot types include
the dataset's ``robot_type`` and whose keys all resolve against its names (several specs may share a robot
type: v2.1 ``main_*`` names and v3 ``*.pos`` names); an export of vlaflow's own (names are slot value
names such as ``arm.joint_pos[3]``: mapped straight back); else none (raw values, generic embodiment).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vlaflow.schemas import ACTION, STATE, FeatureMismatch
from vlaflow.schemas.columns import CAMERA_ROLES

from ..standardize import DatasetSpec, SlotMap, load_spec

SPEC_DIR = Path(__file__).parent / "specs"
_SLOT_VALUE = re.compile(r"^([A-Za-z_][\w.]*)\[(\d+)\]$")  # arm.joint_pos[3]


def builtin_specs() -> list[DatasetSpec]:
    return [load_spec(p) for p in sorted(SPEC_DIR.glob("*.yaml"))]


def split_key(key: str) -> tuple[str, list[str] | None]:
    """``action[a,b]`` → (``action``, [a, b]); ``action`` → (``action``, None)."""
    if key.endswith("]") and "[" in key:
        feature, _, inner = key.partition("[")
        return feature, [n.strip() for n in inner[:-1].split(",") if n.strip()]
    return key, None


def spec_keys(spec: DatasetSpec) -> list[str]:
    keys = [d.input for d in spec.derive] + [m.key for m in (*spec.action, *spec.state)]
    keys += list(spec.state_raw_keys or [])
    derived = {d.out for d in spec.derive}
    return [k for k in dict.fromkeys(keys) if k not in derived]


def resolve_key(key: str, features: dict, names) -> str | None:
    """None if ``key`` resolves against the dataset's features (``names(feature)`` → value names), else why not."""
    feature, wanted = split_key(key)
    if feature not in features:
        return f"no feature {feature!r}"
    if wanted is None:
        return None
    have = names(feature)
    missing = [n for n in wanted if n not in have]
    return f"{feature} has no value(s) named {missing}" if missing else None


def named_steps(steps: dict[str, np.ndarray], keys, names) -> dict[str, np.ndarray]:
    """``steps`` (feature → [T, D]) plus one entry per named key, its columns picked by name."""
    out = dict(steps)
    for key in keys:
        feature, wanted = split_key(key)
        if wanted is None or key in out:
            continue
        if feature not in steps:
            raise FeatureMismatch(f"source key {feature!r} missing")
        have = names(feature)
        try:
            cols = [have.index(n) for n in wanted]
        except ValueError:
            raise FeatureMismatch(f"{feature}: names {have} lack one of {wanted}") from None
        arr = steps[feature].reshape(len(steps[feature]), -1)
        if max(cols) >= arr.shape[1]:
            raise FeatureMismatch(f"{feature}: {arr.shape[1]} values per step, its names list {len(have)}")
        out[key] = arr[:, cols]
    return out


def choose_spec(robot_type: str, features: dict, names, specs: list[DatasetSpec]) -> tuple[DatasetSpec | None, str]:
    """The shipped spec for ``robot_type`` whose keys all resolve; (None, why) if none does."""
    rt = robot_type.lower()
    tried = []
    for s in specs:
        if rt not in [n.lower() for n in (s.dataset, *s.aliases)]:
            continue
        bad = [why for k in spec_keys(s) if (why := resolve_key(k, features, names))]
        if not bad:
            return s, ""
        tried.append(f"{Path(s.source).name}: {bad[0]}")
    if tried:
        return None, f"robot_type {robot_type!r}: no shipped spec fits this dataset's names ({'; '.join(tried)})"
    return None, f"robot_type {robot_type!r} has no shipped spec"


def export_spec(robot_type: str, features: dict, names) -> DatasetSpec | None:
    """A spec for a dataset vlaflow exported: every ``action``/``observation.state`` name is a slot value name."""
    maps = {}
    for feature, layout in (("action", ACTION), ("observation.state", STATE)):
        vals = names(feature) if feature in features else []
        parsed = [_SLOT_VALUE.match(n) for n in vals]
        if not vals or not all(parsed):
            return None
        out = []
        for name, m in zip(vals, parsed):
            slot, i = m.group(1), int(m.group(2))
            if slot not in layout or i >= layout.slot(slot).width:
                return None
            out.append(SlotMap(slot, f"{feature}[{name}]", None, None, i))
        maps[feature] = out
    return DatasetSpec(dataset=robot_type or "vlaflow_export", embodiment=robot_type or "generic",
                       action=maps["action"], state=maps["observation.state"],
                       notes=["Exported by vlaflow: names are slot value names, mapped back one to one."],
                       source="vlaflow export names")


def camera_roles(spec: DatasetSpec | None, camera_keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """role -> feature key: the spec's where the dataset has the key, the rest by name (wrist / left / right /
    depth), then primary, secondary, tertiary in order. Returns (roles, keys left without a role)."""
    roles: dict[str, str] = {}
    if spec is not None:
        roles = {r: k for r, k in spec.cameras.items() if k in camera_keys}
    rest = [k for k in camera_keys if k not in roles.values()]
    left = []
    for k in rest:
        low = k.lower().rsplit(".", 1)[-1]
        if "depth" in low:
            order = ["depth_primary", "depth_secondary", "depth_wrist"]
        elif "wrist" in low or "hand" in low or "gripper" in low:
            order = (["wrist_left"] if "left" in low else ["wrist_right"] if "right" in low else []) + ["wrist"]
        else:
            order = ["primary", "secondary", "tertiary"]
        role = next((r for r in order if r not in roles), None)
        if role is None:
            role = next((r for r in CAMERA_ROLES if r not in roles and not r.startswith("depth")), None)
        if role is None:
            left.append(k)
        else:
            roles[role] = k
    return {r: roles[r] for r in CAMERA_ROLES if r in roles}, left

