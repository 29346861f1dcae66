"""Embodiments: declarative YAML specs, the prompt rendered from them, and immutable registries.

Built-in specs live in ``schemas/embodiments/*.yaml``. There is no process-global registration:
a user's specs are parsed once on the driver (``load_embodiment_files``) into plain dicts that travel
with the converter options, and each reader builds its own ``EmbodimentRegistry`` (built-ins plus
those dicts). The prompt is derived from the spec, so two datasets of one robot get the same text
and a new spec needs no prompt code.
"""
from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .columns import CAMERA_ROLES
from .errors import SpecError
from .slots import ACTION, STATE

BUILTIN_DIR = Path(__file__).parent / "embodiments"

KINDS = ("robot", "human", "agent", "none")  # none: vision-language data, no body at all
BASES = ("fixed", "mobile", "wheeled", "legged", "none")
GRIPPERS = ("parallel", "suction", "dexterous", "none")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # ids name files in an output's meta/
_KNOWN = ("id", "name", "kind", "arms", "base", "cameras", "control_mode", "action_slots", "state_slots",
          "frame", "rate_hz", "notes")
_REQUIRED = ("id", "name", "kind", "control_mode", "action_slots", "frame")

_SLOT_PHRASES = {
    "eef_pos_delta": "end-effector position delta (m)",
    "eef_rot_delta": "rotation delta (rad, axis-angle)",
    "eef_pos": "absolute end-effector position (m)",
    "eef_rot": "absolute orientation (rad, axis-angle)",
    "joint_pos": "absolute joint positions (rad)",
    "joint_pos_delta": "joint position deltas (rad)",
    "vel": "velocity (m/s, rad/s)",
    "command": "discrete move (forward m, turn rad with + = left, pitch rad, stop)",
    "waypoints": "future waypoints (x, y in m, yaw in rad)",
    "wrist_pos": "future wrist position (m)",
    "wrist_rot": "future wrist rotation (rad, axis-angle)",
    "fingertips": "future fingertip positions (m)",
}


@dataclass(frozen=True)
class Arm:
    name: str
    dof: int
    gripper: str = "none"  # parallel | suction | dexterous | none


# -- one-line validation: "<file>: <key>: <problem>" ------------------------------------------------
def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(source: str, key: str, problem: str) -> SpecError:
    return SpecError(f"{source}: {key}: {problem}")


def _text(d: dict, key: str, source: str, default: str | None = None, *, where: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v.strip():
        raise _fail(source, where or key, f"expected a non-empty string, got {_show(v)}")
    return v


def _choice(d: dict, key: str, choices: tuple[str, ...], source: str, default: str, *, where: str | None = None) -> str:
    v = _text(d, key, source, default, where=where)
    if v not in choices:
        raise _fail(source, where or key, f"{v!r} is not one of {', '.join(choices)}")
    return v


def _list(d: dict, key: str, source: str) -> list:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _fail(source, key, f"expected a list, got {_show(v)}")
    return v


def _names(d: dict, key: str, known: list[str], what: str, source: str) -> tuple[str, ...]:
    names = _list(d, key, source)
    for i, s in enumerate(names):
        if not isinstance(s, str):
            raise _fail(source, f"{key}[{i}]", f"expected a string, got {_show(s)}")
        if s not in known:
            near = difflib.get_close_matches(s, known, n=1)
            raise _fail(source, f"{key}[{i}]", f"unknown {what} {s!r}"
                        + (f" (did you mean {near[0]!r}?)" if near else ""))
        if names.index(s) != i:
            raise _fail(source, f"{key}[{i}]", f"{what} {s!r} listed twice")
    return tuple(names)


def _slot_names(layout) -> list[str]:
    return [s.name for s in layout.slots]


def _arms(d: dict, source: str) -> tuple[Arm, ...]:
    arms = []
    for i, a in enumerate(_list(d, "arms", source)):
        key = f"arms[{i}]"
        if not isinstance(a, dict):
            raise _fail(source, key, f"expected a mapping {{name, dof, gripper}}, got {_show(a)}")
        for k in a:
            if k not in ("name", "dof", "gripper"):
                raise _fail(source, f"{key}.{k}", "unknown key (an arm has name, dof, gripper)")
        dof = a.get("dof")
        if isinstance(dof, bool) or not isinstance(dof, int) or dof < 1:
            raise _fail(source, f"{key}.dof", f"expected a positive integer, got {_show(dof)}")
        arms.append(Arm(_text(a, "name", source, where=f"{key}.name"), dof,
                        _choice(a, "gripper", GRIPPERS, source, "none", where=f"{key}.gripper")))
    return tuple(arms)


def _rate(d: dict, source: str) -> float | None:
    v = d.get("rate_hz")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise _fail(source, "rate_hz", f"expected a positive number, got {_show(v)}")
    return v


@dataclass(frozen=True)
class Embodiment:
    id: str
    name: str
    kind: str  # robot | human | agent | none (no body: vision-language rows)
    arms: tuple[Arm, ...]
    base: str  # fixed | mobile | wheeled | legged | none
    cameras: tuple[str, ...]
    control_mode: str
    action_slots: tuple[str, ...]
    state_slots: tuple[str, ...]
    frame: str
    rate_hz: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # converter-read keys (turn_deg...)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Embodiment:
        """Parse and check a spec; every error is one line naming ``source``, the key and the problem."""
        if not isinstance(d, dict):
            raise SpecError(f"{source}: an embodiment spec must be a mapping of keys, got {_show(d)}")
        for k in _REQUIRED:
            if k not in d:
                raise _fail(source, k, "missing (an embodiment needs " + ", ".join(_REQUIRED) + ")")
        eid = d["id"]
        if not isinstance(eid, str) or not _ID.match(eid):
            raise _fail(source, "id", f"expected letters, digits, '_', '.', '-' (a file name), got {_show(eid)}")
        notes = d.get("notes", "")
        if not isinstance(notes, str):
            raise _fail(source, "notes", f"expected a string, got {_show(notes)}")
        return cls(
            id=eid, name=_text(d, "name", source), kind=_choice(d, "kind", KINDS, source, "robot"),
            arms=_arms(d, source), base=_choice(d, "base", BASES, source, "fixed"),
            cameras=_names(d, "cameras", list(CAMERA_ROLES), "camera role", source),
            control_mode=_text(d, "control_mode", source),
            action_slots=_names(d, "action_slots", _slot_names(ACTION), "action slot", source),
            state_slots=_names(d, "state_slots", _slot_names(STATE), "state slot", source),
            frame=_text(d, "frame", source), rate_hz=_rate(d, source), notes=notes,
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict:
        """Plain data (YAML-safe) that ``from_dict`` reads back into an equal spec."""
        d = {"id": self.id, "name": self.name, "kind": self.kind,
             "arms": [{"name": a.name, "dof": a.dof, "gripper": a.gripper} for a in self.arms],
             "base": self.base, "cameras": list(self.cameras), "control_mode": self.control_mode,
             "action_slots": list(self.action_slots), "state_slots": list(self.state_slots), "frame": self.frame}
        if self.rate_hz is not None:
            d["rate_hz"] = self.rate_hz
        if self.notes:
            d["notes"] = self.notes
        d.update(copy.deepcopy(self.extra))
        return d

    def prompt(self, rate_hz: float | None = None) -> str:
        """E.g. "Robot: WidowX 250, one 6-DoF arm with a parallel gripper. Action: ..."."""
        return render_prompt(self, rate_hz)


def _count_word(n: int) -> str:
    return {1: "one", 2: "two", 3: "three", 4: "four"}.get(n, str(n))


def _body_text(e: Embodiment) -> str:
    parts = []
    if e.arms:
        dofs = {a.dof for a in e.arms}
        grippers = {a.gripper for a in e.arms}
        arm_word = "arm" if len(e.arms) == 1 else "arms"
        text = f"{_count_word(len(e.arms))} {'/'.join(str(d) for d in sorted(dofs))}-DoF {arm_word}"
        g = next(iter(grippers)) if len(grippers) == 1 else "mixed"
        if g != "none":
            text += f" with {'a ' if len(e.arms) == 1 else ''}{g} gripper{'s' if len(e.arms) > 1 else ''}"
        parts.append(text)
    if e.base not in ("fixed", "none"):
        parts.append(f"a {e.base} base")
    return " and ".join(parts) if parts else "no actuated body"


def _action_text(e: Embodiment) -> str:
    groups: dict[str, list[str]] = {}
    for s in e.action_slots:
        prefix, _, kind = s.partition(".")
        if kind == "gripper":
            continue
        groups.setdefault(prefix, []).append(_SLOT_PHRASES.get(kind, kind.replace("_", " ")))
    chunks = []
    for prefix, phrases in groups.items():
        text = " and ".join(phrases)
        if len(groups) > 1 or prefix not in ("arm", "nav"):
            text = f"{prefix.replace('_', ' ')}: {text}"
        chunks.append(text)
    return "; ".join(chunks) if chunks else "none"


def render_prompt(e: Embodiment, rate_hz: float | None = None) -> str:
    if e.kind == "none":  # no body, no action, no clock: the prompt says so and the reply is text
        return f"No body: {e.name}. Action: none; there is no robot, state or control, so answer in text."
    rate = rate_hz if rate_hz is not None else e.rate_hz
    who = {"robot": "Robot", "human": "Human", "agent": "Agent"}.get(e.kind, "Embodiment")
    text = f"{who}: {e.name}, {_body_text(e)}. Action: {_action_text(e)} in the {e.frame} frame"
    if rate:
        text += f" at {float(rate):g} Hz"
    if any(s.endswith(".gripper") for s in e.action_slots):
        text += "; gripper 1 = open"
    return text + "."


def read_yaml(path: str | Path, what: str = "embodiment spec"):
    """``yaml.safe_load`` of a user's file; a failure is one line with the file and the line number."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(f"{path}: YAML syntax error at {where}{err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: YAML error: {' '.join(str(err).split())}") from None


def load_embodiment_files(paths: Iterable[str | Path]) -> dict[str, dict]:
    """User embodiment YAMLs (a folder stands for its ``*.yaml``) → {id: spec dict}, checked.

    Parsed on the driver; the plain dicts travel to workers with the converter options. Two files
    declaring one id is an error, not a silent override.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    specs: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    for path in files:
        e = Embodiment.from_dict(read_yaml(path), source=str(path))
        if e.id in specs:
            raise _fail(str(path), "id", f"{e.id!r} is already defined in {origin[e.id]}")
        specs[e.id], origin[e.id] = e.to_dict(), path
    return specs


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Embodiment]:
    specs = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        e = Embodiment.from_dict(read_yaml(path), source=str(path))
        specs[e.id] = e
    return specs


class EmbodimentRegistry:
    """An immutable id → ``Embodiment`` lookup; ``with_specs`` derives a new one."""

    def __init__(self, specs: Mapping[str, Embodiment] | None = None):
        self._specs: dict[str, Embodiment] = dict(specs or {})

    @classmethod
    def builtin(cls) -> EmbodimentRegistry:
        """The built-in specs (parsed once per process)."""
        return cls(_builtin())

    def with_specs(self, specs: Iterable[dict] | Mapping[str, dict]) -> EmbodimentRegistry:
        """A new registry with ``specs`` (spec dicts, or {id: spec dict}) added, overriding same ids."""
        items = specs.values() if isinstance(specs, Mapping) else specs
        merged = dict(self._specs)
        for d in items:
            e = Embodiment.from_dict(d, source=f"embodiment {d.get('id')!r}" if isinstance(d, dict) else "embodiment")
            merged[e.id] = e
        return EmbodimentRegistry(merged)

    def get(self, eid: str) -> Embodiment:
        try:
            return self._specs[eid]
        except KeyError:
            raise SpecError(f"unknown embodiment {eid!r}; known: {', '.join(sorted(self._specs))} "
                            "(add one with --embodiment FILE.yaml)") from None

    def __contains__(self, eid: str) -> bool:
        return eid in self._specs

    def ids(self) -> list[str]:
        return sorted(self._specs)


def get_embodiment(eid: str) -> Embodiment:
    """A built-in spec by id (readers of user data build an ``EmbodimentRegistry`` instead)."""
    return EmbodimentRegistry.builtin().get(eid)
