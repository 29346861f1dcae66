import numpy as np
import pytest

from vlaflow.converters.standardize import spec_from_dict, standardize
from vlaflow.converters.transforms import (binarize_gripper, codepoints_to_text, invert_gripper, rel2abs_gripper,
                                           relabel_from_state)
from vlaflow.schemas import ACTION, FeatureMismatch, SpecError


def test_binarize_gripper_takes_next_settled_value():
    x = np.array([1.0, 0.99, 0.6, 0.3, 0.02, 0.01, 0.5, 0.97])
    np.testing.assert_array_equal(binarize_gripper(x), [1, 1, 0, 0, 0, 0, 1, 1])


def test_rel2abs_gripper_matches_octo_semantics():
    # +1 = close event, -1 = open event, 0 = hold; output 1 = open
    x = np.array([0, 0, 1, 0, 0, -1, 0])
    np.testing.assert_array_equal(rel2abs_gripper(x), [1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(rel2abs_gripper(np.array([0, -1, 0])), [0, 1, 1])  # opened first ⇒ was closed
    np.testing.assert_array_equal(rel2abs_gripper(np.zeros(3)), [1, 1, 1])


def test_relabel_and_invert():
    s = np.array([[0.0, 1.0], [0.5, 1.0], [0.75, 0.0]])
    np.testing.assert_allclose(relabel_from_state(s), [[0.5, 0.0], [0.25, -1.0], [0.0, 0.0]])
    np.testing.assert_allclose(invert_gripper(np.array([[1.0], [0.25]])), [0.0, 0.75])
    assert codepoints_to_text(np.array([104, 105, 0, 0])) == "hi"


def test_spec_fills_named_slots_and_rejects_bad_specs():
    spec = spec_from_dict({
        "dataset": "x", "embodiment": "widowx_250",
        "derive": [{"out": "g", "fn": "invert_gripper", "input": "a", "index": 3}],
        "action": [{"slot": "arm.eef_pos_delta", "key": "a", "index": [0, 3]}, {"slot": "arm.gripper", "key": "g"}],
    })
    a = np.arange(8, dtype=np.float64).reshape(2, 4) / 10
    action, mask, state, smask = standardize({"a": a}, spec, 2)
    lo, _ = ACTION.range("arm.eef_pos_delta")
    g, _ = ACTION.range("arm.gripper")
    np.testing.assert_allclose(action[:, lo:lo + 3], a[:, :3])
    np.testing.assert_allclose(action[:, g], 1 - a[:, 3], rtol=1e-6)
    assert mask.sum() == 4 and not smask.any()
    with pytest.raises(FeatureMismatch, match="source key 'a' missing"):
        standardize({"b": a}, spec, 2)
    with pytest.raises(SpecError, match="unknown transform"):
        spec_from_dict({"dataset": "x", "embodiment": "e", "derive": [{"out": "o", "fn": "eval", "input": "a"}]})
    with pytest.raises(SpecError, match="unknown action slot"):
        spec_from_dict({"dataset": "x", "embodiment": "e", "action": [{"slot": "arm.jetpack", "key": "a"}]})


def test_euler_to_rotvec_orders():
    from vlaflow.converters.transforms import euler_to_rotvec, transform_table
    from vlaflow.schemas.rotations import rotvec_to_matrix, to_rotvec

    rng = np.random.default_rng(0)
    e = rng.uniform(-1.2, 1.2, size=(5, 3))
    # "xyz" extrinsic is the schema's euler_xyz (R = Rz·Ry·Rx)
    np.testing.assert_allclose(euler_to_rotvec(e, seq="xyz"), to_rotvec(e, "euler_xyz"), atol=1e-6)
    # a single angle turns about the axis it is named for, whatever its position in seq
    np.testing.assert_allclose(euler_to_rotvec(np.array([[0.0, 0.0, 0.7]]), seq="zxy"), [[0.0, 0.7, 0.0]], atol=1e-12)
    np.testing.assert_allclose(euler_to_rotvec(np.array([[0.4, 0.0, 0.0]]), seq="zxy"), [[0.0, 0.0, 0.4]], atol=1e-12)
    # extrinsic "zxy" = Ry(c)·Rx(b)·Rz(a); intrinsic "ZXY" = Rz(a)·Rx(b)·Ry(c)
    a, b, c = 0.3, -0.5, 0.9
    rz, rx, ry = (rotvec_to_matrix(np.array(v)) for v in ([0, 0, a], [b, 0, 0], [0, c, 0]))
    got = rotvec_to_matrix(euler_to_rotvec(np.array([[a, b, c]]), seq="zxy"))[0]
    np.testing.assert_allclose(got, ry @ rx @ rz, atol=1e-9)
    got = rotvec_to_matrix(euler_to_rotvec(np.array([[a, b, c]]), seq="ZXY"))[0]
    np.testing.assert_allclose(got, rz @ rx @ ry, atol=1e-9)
    with pytest.raises(ValueError, match="seq"):
        euler_to_rotvec(e, seq="xxy")
    assert transform_table()["euler_to_rotvec"] is euler_to_rotvec


def test_pose_matrix_rotvec_reads_column_and_row_major_poses():
    from vlaflow.converters.transforms import pose_matrix_rotvec, transform_table
    from vlaflow.schemas.rotations import rotvec_to_matrix

    rv = np.array([[0.0, 0.0, np.pi / 2], [0.3, -0.2, 0.1]])
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[:, :3, :3] = rotvec_to_matrix(rv)
    poses[:, :3, 3] = [[0.4, 0.1, 0.3], [0.5, 0.0, 0.2]]
    col_major = np.stack([p.flatten(order="F") for p in poses])
    np.testing.assert_allclose(col_major[:, 12:15], poses[:, :3, 3])  # translation where a spec reads it
    np.testing.assert_allclose(pose_matrix_rotvec(col_major), rv, atol=1e-9)
    np.testing.assert_allclose(pose_matrix_rotvec(poses.reshape(2, 16), order="C"), rv, atol=1e-9)
    # read with the wrong order, a rotation comes back inverted
    np.testing.assert_allclose(pose_matrix_rotvec(col_major, order="C"), -rv, atol=1e-9)
    assert transform_table()["pose_matrix_rotvec"] is pose_matrix_rotvec
    with pytest.raises(ValueError):
        pose_matrix_rotvec(col_major, order="X")
