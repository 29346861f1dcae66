"""``libero``: LIBERO demonstration files (``scripts/create_dataset.py`` layout).

robomimic-like: ``data`` attrs ``problem_info`` (JSON with ``language_instruction``), ``env_name``,
``bddl_file_name``, ``macros_image_convention``; ``data/demo_N/{actions, states, robot_states,
rewards, dones, obs/{agentview_rgb, eye_in_hand_rgb, gripper_states, joint_states, ee_states, ee_pos,
ee_ori}}``. 7-D action = OSC_POSE delta (controller-scaled) + gripper (-1 open / +1 close), 20 Hz.

Frames are stored upside down (OpenGL row order). The normalized frames are flipped vertically,
which ``examples/sim_image_orientation.py`` shows is the physically right fix (a re-render in the
OpenCV convention equals the vertical flip; the cube lands where the camera model projects it);
``--opt libero_image=rotate_180`` gives OpenVLA's 180° rotation (flip + left-right mirror) instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vlaflow.schemas.names import safe_component
from ..base import option
from .common import spec_named
from .hdf5 import SourceFile, attr_json, attr_str, open_h5
from .robomimic import RobomimicConverter, RobosuiteProfile

_SCENE = re.compile(r"^(?:[A-Z0-9]+_)*(?:SCENE\d+|[A-Z]+\d+)_")


def instruction_from_filename(name: str) -> str:
    """``KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5`` → ``turn on the stove``."""
    stem = name.rsplit("/", 1)[-1]
    stem = re.sub(r"\.(hdf5|h5)$", "", stem, flags=re.I)
    stem = re.sub(r"_demo$", "", stem)
    stem = _SCENE.sub("", stem)
    return " ".join(stem.split("_")).strip()


class LiberoConverter(RobomimicConverter):
    name = "libero"
    version = "1.0"
    description = "LIBERO demonstration HDF5 (problem_info instruction, OpenGL frames flipped upright)"
    layouts = ("libero",)

    @dataclass(frozen=True)
    class Options(RobomimicConverter.Options):
        libero_image: Literal["flip_vertical", "rotate_180", "none"] | None = option(
            None, "orientation fix of the frames (default flip_vertical; rotate_180 is OpenVLA's variant)")

    def setup(self, mine: list[SourceFile]) -> None:
        p = None
        for sf in mine[:64]:
            try:
                with open_h5(sf.path) as f:
                    p = LiberoProfile(f, "libero")
                break
            except Exception:
                continue
        self.profile = p
        self._profiles = {}
        root = self.input_path.rstrip("/").rsplit("/", 1)[-1]
        parent = mine[0].path.rsplit("/", 2)[-2] if "/" in mine[0].path else ""
        base = root if not root.lower().endswith((".hdf5", ".h5")) else parent
        self.dataset = safe_component(base.lower()) if base.lower().startswith("libero") else "libero"
        self.spec = self.spec_for_user(spec_named("libero"))
        self.embodiment_id = self.spec.embodiment
        self.fps = self.spec.fps
        self.control_mode = None
        self.action_frame = p.action_frame if p is not None and any(p.controllers) else "world"
        self.cameras = dict(self.spec.cameras)
        self.image_transform = self.choose_orientation(p)
        self.action_raw_keys = [f"actions[{p.action_dim if p else 7}]"]
        widths = p.widths if p is not None else {}
        self.state_raw_keys = [f"{k}[{widths[k]}]" for k in self.spec.state_raw_keys or [] if k in widths]
        if p is not None:
            self.notes.append(f"image convention {p.image_convention}"
                              + ("" if p.image_convention_recorded else " (not recorded: LIBERO's default)"))
        if self.image_transform == "rotate_180":
            self.notes.append("frames rotated 180 degrees (OpenVLA's variant, --opt libero_image=rotate_180): "
                              "this also mirrors left and right; flip_vertical is the physically upright one")

    def choose_orientation(self, p) -> str:
        return self.opts.libero_image or super().choose_orientation(p)

    def spec_of(self, p):
        return self.spec  # one LIBERO spec (or --spec) for every file

    def file_profile(self, f, sf: SourceFile):
        if sf.path not in self._profiles:
            self._profiles[sf.path] = LiberoProfile(f, "libero")
        return self._profiles[sf.path]

    def instruction_for(self, f, profile, sf: SourceFile) -> tuple[str, str]:
        text = str(attr_json(f["data"], "problem_info").get("language_instruction", "") or "").strip()
        if text:
            return text, "problem_info"
        text = instruction_from_filename(sf.rel)
        if text:
            return text, "file_name"
        return attr_str(f["data"], "env_name") or "complete the task", "synthesized_from_env_name"


class LiberoProfile(RobosuiteProfile):
    """LIBERO files keep robosuite's env kwargs in ``env_args`` (when present) and name the env in
    ``env_name``; the controller defaults to robosuite's OSC_POSE when none is recorded."""

    def __init__(self, f, layout: str):
        super().__init__(f, layout)
        data = f["data"]
        self.env_name = attr_str(data, "env_name") or self.env_name
        if not any(self.controllers):
            self.controllers = [{}]
