"""Per-dataset conventions and provenance, held as data and written into the schema metadata."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from .columns import IMAGE_TRANSFORMS, TASK_FAMILIES
from .errors import SpecError

NS_PER_S = 1_000_000_000


def parse_fps(value) -> Fraction:
    """Accept ``5``, ``"30000/1001"``, ``[30000, 1001]``; keep it exact."""
    if isinstance(value, (list, tuple)):
        value = Fraction(int(value[0]), int(value[1]))
    fps = Fraction(value)
    if fps <= 0:
        raise SpecError(f"fps must be positive, got {value!r}")
    return fps


def step_timestamps_ns(num_steps: int, fps: Fraction):
    """Integer timestamps for a constant-rate stream: round(i * 1e9 / fps), no float drift."""
    import numpy as np

    i = np.arange(num_steps, dtype=np.int64)
    # (i * NS * den + num // 2) // num rounds half up exactly in integers.
    return (i * NS_PER_S * fps.denominator + fps.numerator // 2) // fps.numerator


@dataclass
class DatasetInfo:
    """What a dataset *is* and which source conventions were normalized away."""

    name: str
    task_family: str
    embodiment: str
    fps: Fraction
    license: str = "unknown"
    source_uri: str = ""
    converter: str = ""
    converter_version: str = ""
    gripper_convention: str = "none"  # the SOURCE's gripper convention
    rotation_repr: str = "none"  # the SOURCE's rotation representation
    action_frame: str = "none"
    control_mode: str = "none"
    image_transform: str = "none"
    cameras: dict[str, str] = field(default_factory=dict)  # role -> source key
    action_raw_keys: list[str] = field(default_factory=list)  # flatten order of action_raw
    state_raw_keys: list[str] = field(default_factory=list)
    raw_keys: list[str] = field(default_factory=list)  # source features kept verbatim in the raw side table
    dropped_keys: dict[str, str] = field(default_factory=dict)  # source feature -> why the spec leaves it out
    notes: list[str] = field(default_factory=list)
    # Trajectory targets, when rows carry them: {"frame": ..., "horizon": H, "stride": source samples per
    # step, "points": [names of the free points.* in order]}.
    trajectory: dict = field(default_factory=dict)

    def __post_init__(self):
        self.fps = parse_fps(self.fps)
        if self.task_family not in TASK_FAMILIES:
            raise SpecError(f"{self.name}: task_family {self.task_family!r} not in {TASK_FAMILIES}")
        for t in self.image_transform.split("+"):
            if t not in IMAGE_TRANSFORMS:
                raise SpecError(f"{self.name}: image_transform {t!r} not in {IMAGE_TRANSFORMS}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        return d

    @classmethod
    def from_json(cls, d: dict) -> DatasetInfo:
        return cls(**d)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)
