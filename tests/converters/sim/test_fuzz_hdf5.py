"""Fuzzing the HDF5 layouts' metadata: LIBERO/robomimic files whose attributes (env_args, problem_info, model
files, counts) hold arbitrary text or values, and files cut short at random: every demo ends up an episode or a
named rejection, or the file is refused with one named line."""
from __future__ import annotations

import h5py
from hypothesis import HealthCheck, given, settings, strategies as st

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.sim import LiberoConverter, RobomimicConverter
from vlaflow.schemas import Episode, VlaflowError

FUZZ = settings(derandomize=True, max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# HDF5 strings cannot hold NUL (h5py refuses to write them), so the fuzzed text has none
ATTR_VALUES = (st.text(st.characters(blacklist_characters="\x00"), max_size=40) | st.integers(-2**40, 2**40)
               | st.floats(allow_nan=True)
               | st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b".")) | st.just('{"env_name": 3, "type": "x", "env_kwargs": []}')
               | st.just('{"language_instruction": null}') | st.just("[1, 2"))
DATA_ATTRS = ("env_args", "problem_info", "env_name", "macros_image_convention", "bddl_file_name", "total")
DEMO_ATTRS = ("num_samples", "model_file", "init_state")


def _contained(conv_cls, path) -> list:
    try:
        conv = conv_cls(str(path), ConverterOptions())
        items = [x for u in conv.work_units(1 << 30) for x in conv.read(u)]
    except VlaflowError as err:
        assert "\n" not in str(err)
        return []
    for x in items:
        assert isinstance(x, (Episode, Rejected))
    return items


@FUZZ
@given(data=st.data())
def test_libero_attributes_fuzzed(gen, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("libero") / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5"
    gen.write_libero(path, demos=(3, 2), size=8)
    with h5py.File(path, "r+") as f:
        for key in data.draw(st.lists(st.sampled_from(DATA_ATTRS), min_size=1, max_size=3, unique=True)):
            f["data"].attrs[key] = data.draw(ATTR_VALUES)
        for key in data.draw(st.lists(st.sampled_from(DEMO_ATTRS), max_size=2, unique=True)):
            f["data/demo_0"].attrs[key] = data.draw(ATTR_VALUES)
    for cls in (LiberoConverter, RobomimicConverter):
        items = _contained(cls, path)
        assert len(items) in (0, 2)  # both demos accounted for, or the file refused as a whole


@FUZZ
@given(st.floats(0.0, 0.999))
def test_hdf5_cut_short(gen, tmp_path_factory, frac):
    path = tmp_path_factory.mktemp("cut") / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5"
    gen.write_libero(path, demos=(3, 2), size=8)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * frac)])
    items = _contained(LiberoConverter, path)
    assert all(isinstance(x, Rejected) for x in items) or len(items) == 2
