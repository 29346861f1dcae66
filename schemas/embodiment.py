"""Embodiment registry: declarative YAML specs and the prompt rendered from them.

Built-in specs live in ``schemas/embodiments/*.yaml``; users add their own with
``register_embodiment_file`` (or ``--embodiment-dir`` on the CLI). The prompt is derived from the
spec, so two datasets of one robot get the same text and a new spec needs no prompt code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SpecError
from .slots import ACTION, STATE

BUILTIN_DIR = Path(__file__).parent / "embodiments"

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


@dataclass(frozen=True)
class Embodiment:
    id: str
    name: str
    kind: str  # robot | human | agent
    arms: tuple[Arm, ...]
    base: str  # fixed | mobile | wheeled | legged | none
    cameras: tuple[str, ...]
    control_mode: str
    action_slots: tuple[str, ...]
    state_slots: tuple[str, ...]
    frame: str
    rate_hz: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Embodiment:
        required = ("id", "name", "kind", "control_mode", "action_slots", "frame")
        missing = [k for k in required if k not in d]
        if missing:
            raise SpecError(f"{source}: embodiment spec misses {missing}")
        for s in d["action_slots"]:
            if s not in ACTION:
                raise SpecError(f"{source}: unknown action slot {s!r}")
        for s in d.get("state_slots", []):
            if s not in STATE:
                raise SpecError(f"{source}: unknown state slot {s!r}")
        arms = tuple(Arm(**a) for a in d.get("arms", []))
        known = {"id", "name", "kind", "arms", "base", "cameras", "control_mode", "action_slots",
                 "state_slots", "frame", "rate_hz", "notes"}
        return cls(
            id=str(d["id"]), name=str(d["name"]), kind=str(d["kind"]), arms=arms,
            base=str(d.get("base", "fixed")), cameras=tuple(d.get("cameras", [])),
            control_mode=str(d["control_mode"]), action_slots=tuple(d["action_slots"]),
            state_slots=tuple(d.get("state_slots", [])), frame=str(d["frame"]),
            rate_hz=d.get("rate_hz"), notes=str(d.get("notes", "")),
            extra={k: v for k, v in d.items() if k not in known},
        )

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
    rate = rate_hz if rate_hz is not None else e.rate_hz
    who = {"robot": "Robot", "human": "Human", "agent": "Agent"}.get(e.kind, "Embodiment")
    text = f"{who}: {e.name}, {_body_text(e)}. Action: {_action_text(e)} in the {e.frame} frame"
    if rate:
        text += f" at {float(rate):g} Hz"
    if any(s.endswith(".gripper") for s in e.action_slots):
        text += "; gripper 1 = open"
    return text + "."


class EmbodimentRegistry:
    def __init__(self):
        self._specs: dict[str, Embodiment] = {}

    def register(self, e: Embodiment, *, replace: bool = False) -> None:
        if e.id in self._specs and not replace and self._specs[e.id] != e:
            raise SpecError(f"embodiment {e.id!r} already registered with a different spec")
        self._specs[e.id] = e

    def load_file(self, path: str | Path, *, replace: bool = False) -> Embodiment:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise SpecError(f"{path}: cannot read embodiment spec ({err})") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: embodiment spec must be a mapping")
        e = Embodiment.from_dict(data, source=str(path))
        self.register(e, replace=replace)
        return e

    def load_dir(self, path: str | Path, *, replace: bool = False) -> None:
        for p in sorted(Path(path).glob("*.yaml")):
            self.load_file(p, replace=replace)

    def get(self, eid: str) -> Embodiment:
        try:
            return self._specs[eid]
        except KeyError:
            raise SpecError(f"unknown embodiment {eid!r}; known: {sorted(self._specs)}") from None

    def __contains__(self, eid: str) -> bool:
        return eid in self._specs

    def ids(self) -> list[str]:
        return sorted(self._specs)


_REGISTRY: EmbodimentRegistry | None = None


def registry() -> EmbodimentRegistry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = EmbodimentRegistry()
        _REGISTRY.load_dir(BUILTIN_DIR)
    return _REGISTRY


def get_embodiment(eid: str) -> Embodiment:
    return registry().get(eid)


def register_embodiment_file(path: str | Path) -> Embodiment:
    return registry().load_file(path, replace=True)
