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


@dataclass(frozen=True)
class Leaf:
    """One step feature, flattened: ``observation/image_0``.

    ``ragged`` counts the ``Sequence`` levels above it inside a step (its values then vary in length per
    step); ``names`` are a ClassLabel's class names (empty when the file does not list them)."""

    key: str
    kind: str  # tensor | image | text
    shape: tuple
    dtype: str  # a NumPy dtype name; "object" for strings and bytes
    encoding: str = "none"  # tensors: none | bytes | zlib; images: jpeg | png
    ragged: int = 0
    names: tuple = ()

    @property
    def numeric(self) -> bool:
        return self.kind == "tensor" and self.dtype not in ("object", "str") and not self.ragged

    @property
    def width(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


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
    folder: str = ""  # the directory name above the version folder (storage name; may differ from `name`)

    def features(self):
        from tensorflow_datasets.core import features as tfds_features

        try:
            return tfds_features.FeatureConnector.from_json(self.features_json)
        except Exception as err:  # a class or argument this tensorflow-datasets cannot build
            raise InputError(f"{self.uri}: features.json cannot be read by tensorflow-datasets: "
                             f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}") from None

    def step_leaves(self) -> list[Leaf]:
        """Step features in features.json order (the order `action_raw` is flattened in)."""
        node = self.features_json["featuresDict"]["features"]["steps"].get("sequence", {}).get("feature", {})
        return _leaves(self.features()["steps"].feature, node, "", 0)

    def episode_leaves(self) -> list[Leaf]:
        feats = self.features()
        if "episode_metadata" not in feats:
            return []
        return _leaves(feats["episode_metadata"], self.features_json["featuresDict"]["features"]["episode_metadata"],
                       "", 0)


def _leaves(feat, node: dict, prefix: str, ragged: int) -> list[Leaf]:
    """Walk the tensorflow-datasets feature objects, so every FeatureConnector a features.json can name reads,
    in the file's own key order (``node``: the same feature in features.json)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import features as F

    key = prefix.rstrip("/")
    if isinstance(feat, F.FeaturesDict):
        children = node.get("featuresDict", {}).get("features", {})
        order = [k for k in children if k in feat] + [k for k in feat.keys() if k not in children]
        return [leaf for k in order for leaf in _leaves(feat[k], children.get(k, {}), f"{prefix}{k}/", ragged)]
    if isinstance(feat, tfds.features.Dataset):
        raise InputError(f"nested Dataset feature {key!r} inside steps is not supported")
    if isinstance(feat, F.Sequence):
        return _leaves(feat.feature, node.get("sequence", {}).get("feature", {}), prefix, ragged + 1)
    if isinstance(feat, F.Image):
        return [Leaf(key, "image", tuple(feat.shape), np.dtype(feat.np_dtype).name,
                     getattr(feat, "_encoding_format", None) or "png", ragged)]
    if isinstance(feat, F.Text):
        return [Leaf(key, "text", (), "object", "none", ragged)]
    info = feat.get_tensor_info()
    if not isinstance(info, F.TensorInfo):  # a composite connector (e.g. BBoxFeature, Video): its own tensors
        raise InputError(f"feature {key!r} ({type(feat).__name__}) is not supported")
    dtype = np.dtype(info.np_dtype)
    names = tuple(getattr(feat, "names", None) or ()) if isinstance(feat, F.ClassLabel) else ()
    encoding = str(getattr(getattr(feat, "_encoding", None), "value", "none") or "none")
    return [Leaf(key, "tensor", tuple(info.shape), "object" if dtype.kind in "OSU" else dtype.name, encoding,
                 ragged, names)]


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
    return BuilderDir(uri, fs, root, ds_info, features_json, name, version, shards,
                      folder=posixpath.basename(posixpath.dirname(root.rstrip("/"))))
