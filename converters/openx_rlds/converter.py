"""``openx_rlds``: Open-X Embodiment RLDS (TFDS builder dirs of TFRecord shards), no TensorFlow."""
from __future__ import annotations

import base64
import difflib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

import pyarrow as pa

from vlaflow.media.images import encode_depth_mm, encode_image
from vlaflow.schemas import DatasetInfo, Episode, EpisodeError, FeatureMismatch, InputError, TruncatedRecord
from vlaflow.schemas.raw import raw_field, raw_schema

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..standardize import (DEPTH_UNITS_MM, DatasetSpec, last_action_invalid, load_spec_dir, spec_from_dict,
                           spec_to_dict, standardize)
from ..transforms import bgr_to_rgb_image, codepoints_to_text
from ..units import pack_ranges
from .builder import BuilderDir, Leaf, open_builder
from .tfrecord import RecordError, index_records, iter_records

log = logging.getLogger(__name__)

SPEC_DIR = Path(__file__).parent / "specs"
_INSTRUCTION_KEYS = ("language_instruction", "observation/natural_language_instruction",
                     "observation/instruction")
_FLAGS = ("is_first", "is_last", "is_terminal")


def builtin_specs() -> dict[str, DatasetSpec]:
    return load_spec_dir(SPEC_DIR)


def camera_kind(leaf: Leaf) -> str | None:
    """How a feature becomes a camera's frames: ``image`` (encoded bytes, kept), ``depth`` (a float map,
    written as 16-bit PNG in mm), ``float_image`` (TFDS's float32 Image: a PNG of the floats' bytes, read
    back as a depth map), ``array`` (an integer image-shaped tensor, written as PNG); else None."""
    if leaf.ragged:
        return None
    if leaf.kind == "image":
        return "float_image" if leaf.dtype == "float32" else "image"
    if leaf.kind != "tensor" or leaf.dtype == "object" or leaf.dtype == "bool":
        return None
    shape = leaf.shape
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1):
        return "depth" if leaf.dtype.startswith("float") else "array"
    if len(shape) == 3 and shape[-1] in (3, 4) and leaf.dtype in ("uint8", "uint16"):
        return "array"
    return None


def generic_spec(builder: BuilderDir, leaves: list[Leaf]) -> DatasetSpec:
    """For a dataset with no spec: raw actions only, cameras assigned by order, generic body."""
    cams: dict[str, str] = {}
    free = ["primary", "secondary", "tertiary"]
    for leaf in leaves:
        kind = camera_kind(leaf)
        if kind is None or (kind != "image" and not leaf.key.startswith("observation/")):
            continue
        depth = kind in ("depth", "float_image") or "depth" in leaf.key.lower() or leaf.dtype != "uint8"
        low = leaf.key.lower()
        role = ("depth_primary" if depth else
                "wrist" if ("wrist" in low or "hand" in low or "gripper" in low) else
                (free.pop(0) if free else None))
        if role and role not in cams:
            cams[role] = leaf.key
    keys = {leaf.key for leaf in leaves if leaf.kind == "text" or leaf.dtype == "object"}
    instr = [k for k in _INSTRUCTION_KEYS if k in keys][:1]
    return DatasetSpec(dataset=builder.name, embodiment="generic", cameras=cams, instruction_keys=instr,
                       notes=["no vlaflow spec: action/state slots empty; use action_raw and the raw table"],
                       source="<generic>")


def find_spec(builder: BuilderDir, specs: dict[str, DatasetSpec]) -> DatasetSpec | None:
    """The built-in spec for the dataset's own name, else for its storage folder's name."""
    return specs.get(builder.name) or specs.get(builder.folder)


MAX_NAMED_MISSING = 10_000  # missing records named one by one up to this many


@dataclass(frozen=True)
class DeclaredRecords:
    """A whole-shard unit's payload: the records dataset_info.json declares (what a truncated shard lost)."""

    count: int | None


class OpenXRLDSConverter(Converter):
    name = "openx_rlds"
    version = "1.0"
    description = "Open-X Embodiment RLDS (TFDS builder dir of TFRecord shards), read without TensorFlow"

    @dataclass(frozen=True)
    class Options:
        no_crc: bool = option(False, "skip the CRC32C check of every record (faster; corruption goes unseen)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            open_builder(input_path)
            return True
        except InputError:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.builder = open_builder(input_path)
        self.leaves = self.builder.step_leaves()
        self._leaf = {leaf.key: leaf for leaf in self.leaves}
        self._warnings: list[str] = []
        if self.options.spec is not None:  # parsed on the driver; a worker never opens the user's file
            self.spec = spec_from_dict(self.options.spec, source=self.options.spec_file or "--spec")
        else:
            specs = builtin_specs()
            self.spec = find_spec(self.builder, specs)
            if self.spec is None:
                self.spec = generic_spec(self.builder, self.leaves)
                self._warnings.append(
                    f"no spec for dataset {self.builder.name!r}: ingesting raw actions with the generic "
                    f"embodiment ({len(set(map(id, specs.values())))} datasets have built-in specs, listed by "
                    f"`vlaflow converters --specs`; pass --spec FILE)")
        self._check_spec_keys()
        self._cameras: dict[str, tuple[Leaf, str]] = {}
        for role, key in self.spec.cameras.items():
            leaf = self._leaf.get(key)
            kind = camera_kind(leaf) if leaf is not None else None
            if kind is None:
                what = "missing" if leaf is None else f"a {leaf.dtype} {leaf.kind} of shape {leaf.shape}"
                raise InputError(f"spec {self.spec.source}: camera {role} -> {key!r} is {what}, not an image "
                                 f"feature or an image-shaped tensor of {self.builder.name}")
            self._cameras[role] = (leaf, kind)
        self.embodiment = self.embodiments.get(self.spec.embodiment)
        self._last_invalid = last_action_invalid(self.spec)
        self.action_keys = [leaf for leaf in self.leaves
                            if (leaf.key == "action" or leaf.key.startswith("action/")) and leaf.numeric]
        if self.spec.state_raw_keys is not None:
            self.state_keys = [self._leaf[k] for k in self.spec.state_raw_keys if k in self._leaf
                               and self._leaf[k].numeric]
        else:
            self.state_keys = [leaf for leaf in self.leaves
                               if leaf.key.startswith("observation/") and leaf.numeric
                               and len(leaf.shape) <= 1 and leaf.dtype != "bool" and leaf.width <= 64]
        scalar = lambda k: k in self._leaf and self._leaf[k].numeric and not self._leaf[k].shape  # noqa: E731
        self._scalars = {k for k in (*_FLAGS, "reward", "discount") if scalar(k)}
        carried = self._scalars | set(self.spec.cameras.values()) | set(self.spec.instruction_keys)
        carried |= {leaf.key for leaf in self.action_keys + self.state_keys}
        self.raw_leaves = [leaf for leaf in self.leaves if leaf.key not in carried and leaf.key not in self.spec.drop]
        splits = sorted(self.builder.shards)
        if self.options.split:
            wanted = [s.strip() for s in self.options.split.split(",")]
            missing = [s for s in wanted if s not in self.builder.shards]
            if missing:
                raise InputError(f"split(s) {missing} not in {self.input_path}; have {splits}")
            splits = wanted
        self.splits = splits
        self._parser = None

    def _check_spec_keys(self) -> None:
        """Every key the spec reads is a feature of this dataset: a wrong spec fails before any record, once."""
        spec, derived = self.spec, {d.out for d in self.spec.derive}
        reads = [(f"derive {d.out}", d.input) for d in spec.derive]
        reads += [(f"{kind} {m.slot}", m.key) for kind, maps in (("action", spec.action), ("state", spec.state))
                  for m in maps]
        reads += [("instruction", k) for k in spec.instruction_keys]
        for what, key in reads:
            if key in derived or key in self._leaf:
                continue
            near = difflib.get_close_matches(key, list(self._leaf), n=1)
            raise InputError(f"spec {spec.source}: {what} reads {key!r}, which is not a step feature of "
                             f"{self.builder.name}" + (f" (did you mean {near[0]!r}?)" if near else ""))

    # -- metadata -------------------------------------------------------------------------
    def resolved_spec(self) -> dict:
        return spec_to_dict(self.spec)

    def datasets(self) -> list[DatasetInfo]:
        conv = self.spec.conventions
        return [DatasetInfo(
            name=self.spec.dataset, task_family=self.spec.task_family, embodiment=self.spec.embodiment,
            fps=self.spec.fps, license=self.spec.license,
            source_uri=f"{self.builder.uri} ({self.builder.name} {self.builder.version})",
            converter=self.name, converter_version=self.version,
            gripper_convention=conv.get("gripper_convention", "none"),
            rotation_repr=conv.get("rotation_repr", "none"), action_frame=conv.get("action_frame", "none"),
            control_mode=conv.get("control_mode", self.embodiment.control_mode),
            image_transform=self.spec.image_transform, cameras=dict(self.spec.cameras),
            action_raw_keys=[f"{leaf.key}[{leaf.width}]" for leaf in self.action_keys],
            state_raw_keys=[f"{leaf.key}[{leaf.width}]" for leaf in self.state_keys],
            raw_keys=[leaf.key for leaf in self.raw_leaves],
            dropped_keys={k: v for k, v in self.spec.drop.items() if k in self._leaf},
            notes=list(self.spec.notes),
        )]

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def raw_schema(self) -> pa.Schema | None:
        return raw_schema([raw_field(leaf.key, leaf.dtype, leaf.shape, leaf.ragged, text=leaf.kind == "text",
                                     image=leaf.kind == "image", names=leaf.names) for leaf in self.raw_leaves])

    # -- work units -----------------------------------------------------------------------
    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        units = []
        for split in self.splits:
            for fi, shard in enumerate(self.builder.shards[split]):
                if shard.size <= target_bytes:
                    # Read to the end of the file, whatever dataset_info declares; the declared
                    # count only explains what a truncated file lost.
                    units.append(WorkUnit(shard.path, split, 0, None, shard.size, 0, fi,
                                          DeclaredRecords(shard.declared_records)))
                    continue
                with self.builder.fs.open_input_file(shard.path) as f:
                    records = index_records(f)
                ranges = pack_ranges([size for _, size in records], target_bytes) or [(0, 0, 0)]
                for a, b, acc in ranges:
                    # The last range runs to the end of the file, so a bad tail is still reported.
                    off = records[a][0] if records else 0
                    last = b == len(records)
                    units.append(WorkUnit(shard.path, split, a, None if last else b,
                                          shard.size - off if last else acc, off, fi))
        return units

    # -- reading --------------------------------------------------------------------------
    def _episode_key(self, unit: WorkUnit, index: int) -> str:
        return f"{self.spec.dataset}/{unit.split}/{unit.file_index:05d}-{index:06d}"

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        verify = not self.opts.no_crc
        name = unit.source.rsplit("/", 1)[-1]
        declared = unit.payload.count if isinstance(unit.payload, DeclaredRecords) else None
        reached, broke = unit.start, False
        with self.builder.fs.open_input_file(unit.source) as f:
            f.seek(unit.offset)
            for item in iter_records(f, start_index=unit.start, stop_index=unit.stop, verify=verify, name=name):
                reached = (item.index if isinstance(item, RecordError) else item[0]) + 1
                broke = broke or (isinstance(item, RecordError) and item.fatal)
                if isinstance(item, RecordError):
                    reason = str(item.error)
                    declared = unit.payload.count if unit.payload else None
                    end = unit.stop if unit.stop is not None else declared
                    if item.fatal and end is not None and end > item.index + 1:
                        reason += f"; records {item.index + 1}..{end - 1} after it are unreachable"
                    yield Rejected(self._episode_key(unit, item.index), item.error.code, reason,
                                   f"{unit.source}#{item.index}")
                    continue
                index, _, payload = item
                key = self._episode_key(unit, index)
                try:
                    yield self.episode(payload, key, unit, index)
                except EpisodeError as err:
                    yield Rejected.from_error(key, err, f"{unit.source}#{index}")
        if declared is not None and not broke and reached < declared:
            # The file ends cleanly but early (emptied, cut at a record boundary): the records dataset_info
            # declares beyond it are named, not silently missing from the ledger.
            if declared - reached > MAX_NAMED_MISSING:  # an absurd declaration: one entry, not millions
                err = TruncatedRecord(f"{name}: the file ends after {reached} record(s); dataset_info.json declares "
                                      f"{declared}")
                yield Rejected(self._episode_key(unit, reached) + f"..{declared - 1}", err.code, str(err), unit.source)
                return
            for index in range(reached, declared):
                err = TruncatedRecord(f"{name}: the file ends after {reached} record(s); dataset_info.json declares "
                                      f"{declared}, record {index} is missing")
                yield Rejected(self._episode_key(unit, index), err.code, str(err), f"{unit.source}#{index}")

    def _parse(self, payload: bytes) -> tuple[dict, dict]:
        if self._parser is None:
            from tensorflow_datasets.core import example_parser, features as tfds_features  # noqa: F401

            self._parser = example_parser.ExampleParserNp(self.builder.features().get_serialized_info())
            self._decoders = {leaf.key: leaf for leaf in self.leaves
                              if leaf.kind == "tensor" and leaf.encoding in ("bytes", "zlib")}
            feats = self.builder.features()["steps"].feature
            self._decode_feature = {k: _get(feats, k) for k in self._decoders}
        try:
            parsed = self._parser.parse_example(payload)
        except Exception as err:  # protobuf DecodeError, reshape ValueError, KeyError ...
            raise FeatureMismatch(f"record does not match features.json: {type(err).__name__}: "
                                  f"{str(err).splitlines()[-1][:300] if str(err) else ''}") from None
        # TFDS omits None leaves: a missing optional key is simply absent from `steps`.
        steps = {k: v for k, v in _flatten(parsed.get("steps") or {}).items() if v is not None}
        meta = {k: v for k, v in _flatten(parsed.get("episode_metadata") or {}).items() if v is not None}
        for k in self._decoders:
            if k in steps:
                feat = self._decode_feature[k]
                try:
                    steps[k] = np.stack([feat.decode_example_np(v) for v in steps[k]])
                except Exception as err:
                    raise FeatureMismatch(f"cannot decode {self._decoders[k].encoding} tensor {k!r}: {err}") from None
        return steps, meta

    def episode(self, payload: bytes, key: str, unit: WorkUnit, index: int) -> Episode:
        steps, meta = self._parse(payload)
        if "is_first" in steps:
            t = len(steps["is_first"])
        elif steps:
            t = len(next(iter(steps.values())))
        else:
            raise FeatureMismatch("record has no step features")
        for k, v in steps.items():
            if len(v) != t:
                raise FeatureMismatch(f"step feature {k!r} has {len(v)} entries, is_first has {t}")
        spec = self.spec
        action, amask, state, smask = standardize(steps, spec, t)
        scalars = {k: steps[k] for k in self._scalars if k in steps}
        is_first = _flag(scalars, "is_first", t, first=True)
        source_last = _flag(scalars, "is_last", t, last=True)
        if source_last[:-1].any():
            raise FeatureMismatch(f"is_last set at step {int(np.argmax(source_last))} of {t}")
        # In the table is_last marks the episode's final row. A source whose final step lacks
        # is_last was cut short (e.g. a debug subsample); that is recorded, not repaired.
        is_terminal = _flag(scalars, "is_terminal", t)
        images = {role: self._frames(steps[leaf.key], role, kind) for role, (leaf, kind) in self._cameras.items()
                  if leaf.key in steps}
        # TFDS leaves an optional feature out of a record that lacks it: that is a null, not an error.
        raw = {leaf.key: steps[leaf.key] if leaf.key in steps else [None] * t for leaf in self.raw_leaves}
        instr_steps, instructions = self._instructions(steps, t)
        meta = dict(meta, source_is_last=bool(source_last[-1]))
        extra = {k: _jsonable(v) for k, v in meta.items()}
        # RLDS: the is_last step's action is undefined; so is a relabelled action with no next state.
        return self.make_episode(
            key, action=action, action_mask=amask, action_raw=_concat(steps, self.action_keys, t),
            state=state, state_mask=smask, state_raw=_concat(steps, self.state_keys, t),
            is_first=is_first, is_terminal=is_terminal, last_action_valid=not (bool(source_last[-1]) or self._last_invalid),
            instruction=instr_steps, instructions=instructions, language=spec.language, images=images,
            reward=scalars["reward"].astype(np.float32) if "reward" in scalars else None,
            discount=scalars["discount"].astype(np.float32) if "discount" in scalars else None,
            split=unit.split, source_file=unit.source, source_index=index, extra=extra, raw=raw,
        )

    def _frames(self, values, role: str, kind: str) -> list:
        """One camera's T frames as encoded bytes (see ``camera_kind``)."""
        if kind == "image":
            frames = list(values)
            if "bgr_to_rgb" in self.spec.image_transform:
                frames = [bgr_to_rgb_image(b) if b else None for b in frames]
            return frames
        if kind == "float_image":
            return [encode_depth_mm(_float_png(b), DEPTH_UNITS_MM[self.spec.depth_unit]) if b else None
                    for b in values]
        arr = np.asarray(values)
        if kind == "depth" or (kind == "array" and (role.startswith("depth") or arr.dtype != np.uint8)):
            return [encode_depth_mm(a, DEPTH_UNITS_MM[self.spec.depth_unit]) for a in arr]
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if "bgr_to_rgb" in self.spec.image_transform and arr.ndim == 4:
            arr = arr[..., [2, 1, 0, *range(3, arr.shape[-1])]]
        return [encode_image(a, "png") for a in arr]

    def _instructions(self, steps: dict, t: int):
        per_key = []
        for k in self.spec.instruction_keys:
            if k not in steps:
                continue
            v = steps[k]
            if self.spec.instruction_encoding == "codepoints":
                texts = [codepoints_to_text(row) for row in np.asarray(v).reshape(t, -1)]
            else:
                texts = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in v]
            per_key.append(texts)
        if not per_key:
            return "", []
        main = per_key[0]
        instructions = []
        for texts in per_key:
            for x in texts:
                if x and x not in instructions:
                    instructions.append(x)
        return (main[0] if len(set(main)) == 1 else main), instructions


def _float_png(data: bytes) -> np.ndarray:
    """TFDS's float32 Image: a 4-channel 8-bit PNG whose pixels are the floats' little-endian bytes."""
    from PIL import Image

    try:
        rgba = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.uint8)
    except Exception as err:
        raise FeatureMismatch(f"float32 image is not a readable PNG: {err}") from None
    return np.ascontiguousarray(rgba).view("<f4")[..., 0]


def _jsonable(v):
    """Episode metadata as JSON: text as text, other bytes as {"base64": ...}, arrays and ragged lists as lists."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(v).decode("ascii")}
    if isinstance(v, (np.ndarray, list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _get(feats, key: str):
    for part in key.split("/"):
        feats = feats[part]
    return feats


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _flag(steps: dict, key: str, t: int, first: bool = False, last: bool = False) -> np.ndarray:
    if key in steps:
        return np.asarray(steps[key], dtype=bool).reshape(t)
    out = np.zeros(t, dtype=bool)
    if first:
        out[0] = True
    if last:
        out[-1] = True
    return out


def _concat(steps: dict, leaves: list[Leaf], t: int) -> np.ndarray:
    parts = []
    for leaf in leaves:
        if leaf.key not in steps:
            raise FeatureMismatch(f"step feature {leaf.key!r} missing from the record")
        parts.append(np.asarray(steps[leaf.key]).reshape(t, -1).astype(np.float32))
    return np.concatenate(parts, axis=1) if parts else np.zeros((t, 0), np.float32)
