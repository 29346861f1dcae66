"""Every built-in Open-X spec runs: a dataset is synthesized with exactly the keys, widths and
encodings the spec reads, converted, and checked against the spec's declared slots."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.converters.openx_rlds import OpenXRLDSConverter, builtin_specs
from vlaflow.converters.openx_rlds.synth import encode_jpeg, sample_frame, write_rlds_dataset
from vlaflow.converters.standardize import _ROT_WIDTH
from vlaflow.schemas import ACTION, STATE, get_embodiment, validate_episode

SPECS = builtin_specs()


def _widths(spec) -> dict[str, int]:
    """Width each source key needs, from every place the spec reads it."""
    need: dict[str, int] = {}
    derived = {d.out for d in spec.derive}
    layout_of = {id(m): lay for lay, maps in ((ACTION, spec.action), (STATE, spec.state)) for m in maps}
    reads = [(d.input, d.index, None, None) for d in spec.derive]
    reads += [(m.key, m.index, m.rotation, layout_of[id(m)].slot(m.slot).width) for m in spec.action + spec.state]
    for key, index, rot, slot_w in reads:
        if key in derived:
            continue
        w = index[1] if index else (_ROT_WIDTH[rot] if rot else (slot_w or 1))
        need[key] = max(need.get(key, 1), w)
    return need


def _nest(tree: dict, key: str, value) -> None:
    """Place ``value`` at ``a/b/c`` in nested dicts (features and examples share the layout)."""
    *parents, leaf = key.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


@pytest.mark.parametrize("name", sorted(SPECS))
def test_builtin_spec_converts(name, tmp_path):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import features as F

    spec = SPECS[name]
    widths = _widths(spec)
    for k in spec.state_raw_keys or []:
        widths.setdefault(k, 3)
    steps_f: dict = {}

    def put(key, feat):
        _nest(steps_f, key, feat)

    for key, w in widths.items():
        put(key, F.Tensor(shape=(w,), dtype=np.float32))
    for key in spec.cameras.values():
        put(key, F.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="jpeg"))
    for key in spec.instruction_keys:
        put(key, F.Tensor(shape=(12,), dtype=np.int32) if spec.instruction_encoding == "codepoints" else F.Text())
    for flag in ("is_first", "is_last", "is_terminal"):
        put(flag, F.Scalar(dtype=np.bool_))

    def to_dict(node):
        return F.FeaturesDict({k: to_dict(v) if isinstance(v, dict) else v for k, v in node.items()})

    feats = F.FeaturesDict({"steps": tfds.features.Dataset(to_dict(steps_f))})
    rng = np.random.default_rng(0)
    t = 6

    def step(i):
        st: dict = {}

        def set_(key, value):
            _nest(st, key, value)

        for key, w in widths.items():
            v = rng.uniform(-0.5, 0.5, w).astype(np.float32)
            if "gripper" in key or "open_gripper" in key:
                v[:] = float(i >= 3)
            if w == 7 and "quat" not in key and ("pose" in key or "cartesian_pos" in key):
                v[3:7] = [0, 0, 0, 1]
            set_(key, v)
        for key in spec.cameras.values():
            set_(key, encode_jpeg(sample_frame(rng, i, 16)))
        for key in spec.instruction_keys:
            text = "pick up the cup"
            set_(key, np.array([ord(c) for c in text[:12]], np.int32) if spec.instruction_encoding == "codepoints"
                 else text)
        for flag in ("is_first", "is_last", "is_terminal"):
            set_(flag, {"is_first": i == 0, "is_last": i == t - 1, "is_terminal": i == t - 1}[flag])
        return st

    root = write_rlds_dataset(tmp_path, name, "1.0.0", feats, {"train": [{"steps": [step(i) for i in range(t)]}]})
    conv = OpenXRLDSConverter(str(root))
    assert conv.warnings() == []
    (ep,) = [e for u in conv.work_units(1 << 30) for e in conv.read(u)]
    assert not hasattr(ep, "code"), f"rejected: {ep}"
    validate_episode(ep)
    # the mask covers exactly what the spec fills, inside the slots the embodiment declares
    assert ep.action_mask.any() and set(m.slot for m in spec.action) <= set(get_embodiment(spec.embodiment).action_slots)
    for m in spec.action:
        a, b = ACTION.range(m.slot)
        assert ep.action_mask[a:b].any(), m.slot
    g = [m for m in spec.action if m.slot.endswith("gripper")]
    if g:
        a, _ = ACTION.range(g[0].slot)
        assert set(np.unique(ep.action[:, a])) <= {0.0, 0.5, 1.0} or np.all((ep.action[:, a] >= 0) & (ep.action[:, a] <= 1))
    assert ep.instruction == ("" if name == "kuka" else "pick up the "[:12] if spec.instruction_encoding == "codepoints" else "pick up the cup")
    assert set(ep.images) == set(spec.cameras)
