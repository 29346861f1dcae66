"""What R2R and RxR share: graph paths over MP3D connectivity -> navigation episodes (options: ``Options``)."""
from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from typing import Iterator, Literal

from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option, select_splits
from ..units import file_units
from .files import Source
from .graph import (
    GRAPH_ACTION_RAW_KEYS,
    GRAPH_STATE_RAW_KEYS,
    PRIMITIVE_ACTION_RAW_KEYS,
    Decisions,
    GraphStore,
    graph_decisions,
    primitive_decisions,
)
from .rows import DECISION_FPS, TASK_FAMILY, nav_arrays, step_params

LICENSE = "Matterport3D Terms of Use (non-commercial research); R2R/RxR annotations under the same terms"

FRAME_NOTES = [
    ("world frame: MP3D (z up, metres); state.base.pose = (x, y, yaw) with yaw counter-clockwise from +x "
     "(yaw = pi/2 - R2R heading); state.base.z = camera z - height (the floor, = Habitat y)"),
    "one row per decision at a nominal 1 Hz (the source has no clock); the last row is STOP and terminal",
]


def finite_or_none(obj):
    """JSON-safe copy: NaN/inf (which some sources carry for untimed words) become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


class PathConverter(Converter):
    """Base of ``r2r`` and ``rxr``: subclasses find the split files and iterate their entries."""

    dataset_name = ""
    source_name = ""
    split_file = None  # compiled regex of the split file names

    @dataclass(frozen=True)
    class Options:
        connectivity: str | None = option(None, "folder of <scan>_connectivity.json (default: connectivity/ in the "
                                                "input folder or beside the input file)")
        primitives: bool = option(False, "one row per VLN-CE primitive (turn_deg turns, 0.25 m steps) instead of "
                                         "one per graph move")
        turn_deg: Literal[15, 30] = option(15, "primitive turn step in degrees (embodiment nav_habitat_<turn_deg>deg)")
        dataset: str | None = option(None, "dataset name (default r2r / rxr)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            src = Source(input_path)
            if src.is_file(src.root):
                return bool(cls.split_file.fullmatch(posixpath.basename(src.root)))
            return src.is_dir(src.root) and any(cls.split_file.fullmatch(i.base_name) for i in src.listdir(src.root))
        except Exception:  # an unreadable path is simply not ours
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = Source(input_path)
        self.primitives = self.opts.primitives
        self.embodiment = f"nav_habitat_{self.opts.turn_deg}deg" if self.primitives else "nav_discrete_graph"
        if self.primitives:
            self.forward_m, self.turn_rad, _ = step_params(self.embodiments.get(self.embodiment))
        self.dataset = self.opts.dataset or self.dataset_name
        self.files = self.find_files()  # [(split, path)] in a deterministic order
        self.files = select_splits(self.files, self.options.split, input_path)
        if not self.files:
            raise InputError(f"{input_path}: no {self.source_name} split files found")
        self.graphs = self._graph_store()
        self.connectivity = self.graphs.folder

    # -- input layout -----------------------------------------------------------------------
    def find_files(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _graph_store(self) -> GraphStore:
        opt = self.opts.connectivity
        if opt:
            csrc = Source(opt)
            if not csrc.is_dir(csrc.root):
                raise InputError(f"--opt connectivity={opt}: not a folder")
            return GraphStore(csrc, csrc.root)
        base = self.src.root if self.src.is_dir(self.src.root) else posixpath.dirname(self.src.root)
        folder = posixpath.join(base, "connectivity")
        if not self.src.is_dir(folder):
            raise InputError(f"{self.input_path}: no connectivity/ folder beside the split files; "
                             "pass --opt connectivity=DIR (the folder of <scan>_connectivity.json)")
        return GraphStore(self.src, folder)

    # -- metadata ---------------------------------------------------------------------------
    def datasets(self) -> list[DatasetInfo]:
        notes = list(FRAME_NOTES)
        if self.primitives:
            notes.append(f"primitive expansion: turn in {math.degrees(self.turn_rad):g} deg steps towards the "
                         f"next viewpoint, then forward in ~{self.forward_m} m steps landing on it; "
                         "action_raw = Habitat action id (0 STOP, 1 FORWARD, 2 LEFT, 3 RIGHT)")
        else:
            notes.append("graph moves: nav.command = (horizontal edge length m, turn rad + = left, 0, stop); "
                         "action_raw = (next viewpoint index in the scan's connectivity file, -1 = STOP; "
                         "R2R heading of the move; elevation 0)")
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=self.embodiment, fps=DECISION_FPS,
            license=LICENSE, source_uri=f"{self.input_path} ({self.source_name}; connectivity {self.connectivity})",
            converter=self.name, converter_version=self.version, action_frame="agent",
            control_mode="discrete" if self.primitives else "discrete_graph",
            action_raw_keys=PRIMITIVE_ACTION_RAW_KEYS if self.primitives else GRAPH_ACTION_RAW_KEYS,
            state_raw_keys=GRAPH_STATE_RAW_KEYS, notes=notes,
        )]

    # -- planning ---------------------------------------------------------------------------
    def count_entries(self, path: str) -> int | None:
        """Entries in a split file, or None when it cannot be parsed (read() will report why)."""
        raise NotImplementedError

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        return [u for fi, (split, path) in enumerate(self.files)
                for u in file_units(path, split, max(self.src.size(path), 1), self.count_entries(path), target_bytes,
                                    file_index=fi)]

    # -- reading ----------------------------------------------------------------------------
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        raise NotImplementedError

    def decisions(self, entry: dict) -> Decisions:
        """The rows of one graph path (raises EpisodeError); shared by its instructions."""
        try:
            scan, path, heading = str(entry["scan"]), list(entry["path"]), float(entry["heading"])
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureMismatch(f"entry lacks scan/path/heading: {type(err).__name__}: {err}") from None
        if not path:
            raise FeatureMismatch("empty path")
        if not math.isfinite(heading):
            raise FeatureMismatch(f"heading {heading} is not finite")
        g = self.graphs.get(scan)
        idx = g.path_indices(path)
        if self.primitives:
            return primitive_decisions(g, idx, heading, self.forward_m, self.turn_rad)
        return graph_decisions(g, idx, heading)

    def episode(self, dec: Decisions, *, key: str, instruction: str, language: str, unit: WorkUnit,
                index: int, extra: dict, instructions: list[str] | None = None):
        return self.make_episode(
            key, **nav_arrays(dec.poses, dec.commands, dec.action_raw, dec.state_raw, z=dec.z),
            instruction=instruction, instructions=instructions, language=language, split=unit.split,
            source_file=unit.source, source_index=index, extra=finite_or_none(dict(extra, **dec.extra)))

    def reject(self, key: str, err: EpisodeError, unit: WorkUnit, index: int, steps: int = 0) -> Rejected:
        return Rejected.from_error(key, err, f"{unit.source}#{index}", steps)


def path_steps(entry) -> int:
    """Source steps an unconvertible entry loses (graph moves), where knowable."""
    try:
        return len(entry["path"])
    except (KeyError, TypeError):
        return 0


def as_text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


