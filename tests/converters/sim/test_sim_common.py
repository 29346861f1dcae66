"""The sim transforms on known answers, layout sniffing (exactly one converter per input), the MJCF
qpos index, and the spec files themselves."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.converters import sniff as sniff_converter
from vlaflow.converters.sim import LiberoConverter, ManiSkillConverter, RobomimicConverter, RoboTwinConverter
from vlaflow.converters.sim.common import builtin_specs, words_from_name
from vlaflow.converters.sim.hdf5 import mjcf_qpos_index
from vlaflow.converters.transforms import transform_table
from vlaflow.schemas import InputError, get_embodiment
from vlaflow.schemas.rotations import rotvec_to_matrix


def test_sign_gripper_holds_on_zero_and_starts_open():
    f = transform_table()["sign_gripper"]
    np.testing.assert_array_equal(f(np.array([0, 0, 1, 0.3, 0, -1, 0, -0.2])), [1, 1, 0, 0, 0, 1, 1, 1])


def test_osc_scale_clips_and_maps_like_robosuite():
    f = transform_table()["osc_scale"]
    np.testing.assert_allclose(f(np.array([[-3.75, 0.5, 1.0]]), output_min=-0.05, output_max=0.05), [[-0.05, 0.025, 0.05]])
    # asymmetric ranges: robosuite maps the input midpoint to the output midpoint
    np.testing.assert_allclose(f(np.array([0.0, 1.0]), input_min=-1, input_max=1, output_min=0.0, output_max=0.2), [0.1, 0.2])


def test_finger_opening_and_next_step():
    np.testing.assert_allclose(transform_table()["finger_opening"](np.array([[0.04, -0.04], [0.0, 0.0], [0.02, -0.02]])), [1, 0, 0.5])
    np.testing.assert_allclose(transform_table()["finger_opening"](np.array([[0.04, 0.04]]), combine="sum"), [1.0])
    x = np.arange(4.0)[:, None]
    np.testing.assert_array_equal(transform_table()["next_step"](x)[:, 0], [1, 2, 3, 3])
    assert transform_table()["next_step"].invalidates_last


def test_intrinsic_xyz_euler_differs_from_extrinsic():
    from vlaflow.converters.sim.transforms import euler_intrinsic_xyz_to_rotvec

    e = np.array([0.3, -0.2, 0.5])
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(e[0]), -s(e[0])], [0, s(e[0]), c(e[0])]])
    ry = np.array([[c(e[1]), 0, s(e[1])], [0, 1, 0], [-s(e[1]), 0, c(e[1])]])
    rz = np.array([[c(e[2]), -s(e[2]), 0], [s(e[2]), c(e[2]), 0], [0, 0, 1]])
    np.testing.assert_allclose(rotvec_to_matrix(euler_intrinsic_xyz_to_rotvec(e)), rx @ ry @ rz, atol=1e-12)
    assert not np.allclose(rx @ ry @ rz, rz @ ry @ rx)


def test_mjcf_qpos_index():
    xml = """<mujoco><worldbody><body><joint name="a"/><body><joint name="b" type="slide"/></body></body>
      <body><freejoint name="obj"/></body><body><joint name="c" type="ball"/><joint name="d"/></body></worldbody></mujoco>"""
    index, nq = mjcf_qpos_index(xml)
    assert index == {"a": 0, "b": 1, "obj": 2, "c": 9, "d": 13} and nq == 14
    assert mjcf_qpos_index("model_1.xml") is None


def test_words_from_name():
    assert words_from_name("TwoArmHandover") == "two arm handover"
    assert words_from_name("PegInsertionSide-v1") == "peg insertion side"


def test_specs_load_and_name_registered_embodiments():
    specs = builtin_specs()
    assert {"robosuite_osc_pose", "libero", "robotwin2", "maniskill_pd_joint_pos"} <= set(specs)
    for s in specs.values():
        get_embodiment(s.embodiment)


def test_every_input_is_claimed_by_exactly_one_converter(tmp_path, gen):
    gen.write_libero(tmp_path / "lib" / "x_demo.hdf5", demos=(2,))
    gen.write_robotwin2(tmp_path / "rt" / "task" / "cfg", 1)
    gen.write_robotwin_xpl(tmp_path / "xpl" / "e.hdf5")
    gen.write_robotwin_pickles(tmp_path / "pkl" / "episode0")
    gen.write_maniskill(tmp_path / "ms", n=1)
    for sub, name in (("lib", "libero"), ("rt", "robotwin"), ("xpl", "robotwin"), ("pkl", "robotwin"), ("ms", "maniskill")):
        assert sniff_converter(str(tmp_path / sub)) == name  # registry.sniff raises when two claim it
    empty = tmp_path / "empty"
    empty.mkdir()
    for cls in (RobomimicConverter, LiberoConverter, RoboTwinConverter, ManiSkillConverter):
        assert not cls.sniff(str(empty)) and not cls.sniff(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no HDF5"):
        RobomimicConverter(str(empty))
    with pytest.raises(InputError, match="no libero file"):
        LiberoConverter(str(tmp_path / "ms"))


def test_sim_converters_do_not_claim_rlds(bridge_fixture):
    for cls in (RobomimicConverter, LiberoConverter, RoboTwinConverter, ManiSkillConverter):
        assert not cls.sniff(str(bridge_fixture))
