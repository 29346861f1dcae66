"""Fuzzing the ego readers' metadata: a video_trajectory track file (JSON) whose fields hold arbitrary values, and
an EgoDex file whose attributes and datasets are replaced: an episode or a named rejection, never a crash."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.ego import EgoDexConverter, VideoTrajectoryConverter
from vlaflow.media import ClipEncoder
from vlaflow.schemas import Episode, VlaflowError

FUZZ = settings(derandomize=True, max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
VALUE = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=8),
                     lambda k: st.lists(k, max_size=5) | st.dictionaries(st.text(max_size=8), k, max_size=3),
                     max_leaves=15)
TRACK_KEYS = ("instruction", "space", "points", "intrinsics", "camera_poses", "camera_convention", "fps")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    enc = ClipEncoder(Fraction(30), "h264", gop=15)
    for i in range(12):
        enc.add(np.full((48, 64, 3), i * 10, np.uint8))
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    path.write_bytes(enc.finish())
    return path


def _contained(conv_cls, path, **opts) -> list:
    try:
        conv = conv_cls(str(path), ConverterOptions(extra=opts))
        items = [x for u in conv.work_units(1 << 26) for x in conv.read(u)]
    except VlaflowError as err:
        assert "\n" not in str(err)
        return []
    assert all(isinstance(x, (Episode, Rejected)) for x in items)
    return items


@FUZZ
@given(data=st.data())
def test_track_files_with_fuzzed_fields(clip, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("vt")
    (folder / "clip.mp4").symlink_to(clip)
    doc = {"instruction": "push", "space": "pixel", "points": {"cup": [[10 + i, 20] for i in range(12)]}}
    for key in data.draw(st.lists(st.sampled_from(TRACK_KEYS), min_size=1, max_size=3, unique=True)):
        doc[key] = data.draw(VALUE)
    (folder / "clip.json").write_text(json.dumps(doc))
    items = _contained(VideoTrajectoryConverter, folder, rate_hz="10", horizon="4")
    assert len(items) <= 1


@FUZZ
@given(st.sampled_from(["transforms/camera", "transforms/leftHand", "camera/intrinsic", "confidences/leftHand"]),
       st.sampled_from(["scalar", "text", "wrong_shape", "nan", "drop"]))
def test_egodex_datasets_replaced(tmp_path_factory, key, kind):
    import h5py

    from vlaflow.converters.ego.egodex_synth import write_egodex_episode

    root = tmp_path_factory.mktemp("egodex")
    write_egodex_episode(root / "part1" / "fold_towel", 0, n_frames=9, width=64, height=48)
    with h5py.File(root / "part1" / "fold_towel" / "0.hdf5", "r+") as f:
        if key in f:
            shape = f[key].shape
            del f[key]
            if kind != "drop":
                value = {"scalar": np.float64(3.0), "text": np.bytes_("not a matrix"),
                         "wrong_shape": np.zeros((2, 7), np.float32),
                         "nan": np.full(shape, np.nan, np.float32)}[kind]
                f[key] = value
    items = _contained(EgoDexConverter, root)
    assert len(items) <= 1
