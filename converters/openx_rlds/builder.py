"""A TFDS builder directory (``<name>/<version>/``) read without TensorFlow.

Feature specs and the example parser are tensorflow-datasets' own (``FeatureConnector.from_json``,
``ExampleParserNp``); this module only finds the files and flattens the step features.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs as pafs

from vlaflow.media.fs import resolve
from vlaflow.schemas import InputError

SHARD_RE = re.compile(
    r"^(?P<name>.+)-(?P<split>[^-.]+)\.(?P<fmt>tfrecord)-(?P<idx>\d{5,})(?:-of-(?P<n>\d{5,}))?$")
_CLASS = {"Tensor": "tensor", "Scalar": "tensor", "Image": "image", "Text": "text",
          "FeaturesDict": "dict", "Dataset": "dataset"}


@dataclass(frozen=True)
class Leaf:
    """One step feature, flattened: ``observation/image_0``."""

    key: str
    kind: str  # tensor | image | text
    shape: tuple
    dtype: str
    encoding: str = "none"  # tensors: none | bytes | zlib; images: jpeg | png


@dataclass
class Shard:
    split: str
    index: int
    path: str  # path inside `fs`
    size: int
    declared_records: int | None = None


@dataclass
class BuilderDir:
    uri: str
    fs: pafs.FileSystem
    root: str
    info: dict
    features_json: dict
    name: str
    version: str
    shards: dict[str, list[Shard]] = field(default_factory=dict)

    def features(self):
        from tensorflow_datasets.core import features as tfds_features

        return tfds_features.FeatureConnector.from_json(self.features_json)

    def step_leaves(self) -> list[Leaf]:
        """Step features in features.json order (the order `action_raw` is flattened in)."""
        feats = self.features()["steps"].feature
        return _leaves(self.features_json["featuresDict"]["features"]["steps"]["sequence"]["feature"],
                       feats, "")

    def episode_leaves(self) -> list[Leaf]:
        top = self.features_json["featuresDict"]["features"]
        if "episode_metadata" not in top:
            return []
        return _leaves(top["episode_metadata"], self.features()["episode_metadata"], "")


def _leaves(node: dict, feat, prefix: str) -> list[Leaf]:
    cls = node.get("pythonClassName", "").rsplit(".", 1)[-1]
    kind = _CLASS.get(cls, "tensor")
    if kind == "dict":
        out = []
        for k, child in node["featuresDict"]["features"].items():
            out.extend(_leaves(child, feat[k], f"{prefix}{k}/"))
        return out
    key = prefix.rstrip("/")
    if kind == "dataset":
        raise InputError(f"nested Dataset feature {key!r} inside steps is not supported")
    enc = getattr(feat, "_encoding_format", None) if kind == "image" else None
    if kind == "tensor":
        enc = str(getattr(getattr(feat, "_encoding", None), "value", "none") or "none")
    return [Leaf(key, kind, tuple(feat.shape), np.dtype(feat.np_dtype).name if kind != "text" else "str",
                 enc or "none")]


def _read_json(fs, path: str) -> dict:
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode("utf-8"))


def open_builder(uri: str) -> BuilderDir:
    fs, root = resolve(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input not found: {uri}")
    if info.type != pafs.FileType.Directory:
        raise InputError(f"input is not a directory (expected a TFDS builder dir <name>/<version>/): {uri}")
    if fs.get_file_info(posixpath.join(root, "features.json")).type == pafs.FileType.NotFound:
        # Accept <data_dir>/<name>/ with version folders below: take the newest version.
        subs = sorted(
            (i.path for i in fs.get_file_info(pafs.FileSelector(root))
             if i.type == pafs.FileType.Directory
             and fs.get_file_info(posixpath.join(i.path, "features.json")).type == pafs.FileType.File),
            key=lambda p: [int(x) if x.isdigit() else x for x in posixpath.basename(p).split(".")])
        if not subs:
            raise InputError(f"no features.json in {uri}: not a TFDS builder directory")
        root = subs[-1]
    try:
        features_json = _read_json(fs, posixpath.join(root, "features.json"))
        ds_info_path = posixpath.join(root, "dataset_info.json")
        ds_info = _read_json(fs, ds_info_path) if fs.get_file_info(ds_info_path).type == pafs.FileType.File else {}
    except (OSError, ValueError) as err:
        raise InputError(f"{uri}: unreadable TFDS metadata ({err})") from None
    if "steps" not in features_json.get("featuresDict", {}).get("features", {}):
        raise InputError(f"{uri}: features.json has no 'steps': not an RLDS dataset")
    if ds_info.get("fileFormat", "tfrecord") not in ("tfrecord", ""):
        raise InputError(f"{uri}: fileFormat {ds_info.get('fileFormat')!r} is not supported (tfrecord only)")
    name = ds_info.get("name") or posixpath.basename(posixpath.dirname(root))
    version = ds_info.get("version") or posixpath.basename(root)
    declared = {s.get("name"): [int(x) for x in s.get("shardLengths", [])] for s in ds_info.get("splits", [])}
    shards: dict[str, list[Shard]] = {}
    for fi in fs.get_file_info(pafs.FileSelector(root)):
        m = SHARD_RE.match(posixpath.basename(fi.path))
        if not m or fi.type != pafs.FileType.File:
            continue
        shards.setdefault(m["split"], []).append(Shard(m["split"], int(m["idx"]), fi.path, fi.size))
    for split, lst in shards.items():
        lst.sort(key=lambda s: s.index)
        lengths = declared.get(split, [])
        if len(lengths) == len(lst):
            for s, n in zip(lst, lengths):
                s.declared_records = n
    if not shards:
        raise InputError(f"{uri}: no TFRecord shards (<name>-<split>.tfrecord-NNNNN[-of-NNNNN]) found")
    return BuilderDir(uri, fs, root, ds_info, features_json, name, version, shards)
