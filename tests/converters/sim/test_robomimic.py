"""robomimic / robosuite raw on the real fixtures: counts, exact raw actions, controller scaling,
gripper sign, joint state from the MuJoCo state, images flipped upright, masks, extra groups."""
from __future__ import annotations

import shutil

import h5py
import numpy as np

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters import sniff as sniff_converter
from vlaflow.converters.sim import RobomimicConverter
from vlaflow.schemas import ACTION, STATE, validate_episode


def sl(layout, name):
    a, b = layout.range(name)
    return slice(a, b)


def test_raw_lift_counts_raw_actions_and_scaling(sim_fixtures, gen, read):
    conv = RobomimicConverter(str(gen.LIFT_RAW))
    info = conv.datasets()[0]
    assert info.name == "robosuite_lift" and info.embodiment == "panda_osc_pose" and float(info.fps) == 20
    assert info.action_raw_keys == ["actions[7]"] and info.image_transform == "none"
    assert info.gripper_convention == "sign_plus1_close_minus1_open" and info.action_frame == "world"
    eps = read(conv)
    assert [e.length for e in eps] == [482, 510, 392]
    with h5py.File(gen.LIFT_RAW) as f:
        for ep, name in zip(eps, ("demo_1", "demo_2", "demo_3")):
            validate_episode(ep, verify_images=True)
            src = f[f"data/{name}/actions"][()]
            assert ep.action_raw.dtype == np.float32 and ep.action_raw.tobytes() == src.astype(np.float32).tobytes()
            # OSC_POSE: clip to [-1, 1] then × 0.05 m / 0.5 rad (the file's controller config)
            np.testing.assert_allclose(ep.action[:, sl(ACTION, "arm.eef_pos_delta")], np.clip(src[:, :3], -1, 1) * 0.05, atol=1e-7)
            np.testing.assert_allclose(ep.action[:, sl(ACTION, "arm.eef_rot_delta")], np.clip(src[:, 3:6], -1, 1) * 0.5, atol=1e-7)
            grip = ep.action[:, sl(ACTION, "arm.gripper")][:, 0]
            assert set(np.unique(src[:, 6])) == {-1.0, 1.0}
            np.testing.assert_array_equal(grip, np.where(src[:, 6] > 0, 0.0, 1.0))  # +1 close → 0, -1 open → 1
            states = f[f"data/{name}/states"][()]
            # joint positions from the flattened MuJoCo state [time, qpos...], located via the model XML
            np.testing.assert_allclose(ep.state[:, sl(STATE, "arm.joint_pos")], states[:, 1:8], atol=1e-6)
            np.testing.assert_allclose(ep.state[:, sl(STATE, "arm.gripper")][:, 0],
                                       np.clip((states[:, 8] - states[:, 9]) / 0.08, 0, 1), atol=1e-6)
            assert ep.state_raw.shape == (ep.length, 32) and ep.reward is None
            assert ep.instruction == "lift the cube" and ep.extra["instruction_source"] == "synthesized_from_env_name"
    assert len({e.episode_id for e in eps}) == 3 and eps[0].episode_id == "robosuite_lift/train/demo/demo_1"


def test_raw_wipe_has_no_gripper(sim_fixtures, gen, read):
    conv = RobomimicConverter(str(gen.WIPE_RAW))
    (ep,) = read(conv)
    assert conv.datasets()[0].embodiment == "panda_wipe_osc_pose" and ep.length == 174
    assert ep.action_raw.shape == (174, 6)
    assert not ep.action_mask[sl(ACTION, "arm.gripper")].any()
    assert ep.action_mask[sl(ACTION, "arm.eef_pos_delta")].all()
    assert not ep.state_mask.any()  # model_file is a file name in robosuite 1.0: no joint state to locate
    assert len(ep.extra["per_step"]["joint_torques"]) == 174  # robosuite 1.0 extra, aligned: kept
    validate_episode(ep)


def test_twoarm_handover_maps_arms_and_reports_unaligned_groups(sim_fixtures, gen, read):
    conv = RobomimicConverter(str(gen.HANDOVER))
    info = conv.datasets()[0]
    assert info.embodiment == "two_arm_panda_osc_pose"
    eps = read(conv)
    assert any("own time axes" in w for w in conv.warnings())  # found while planning
    assert [e.length for e in eps] == [641, 522, 376, 307, 253, 247, 429]
    ep = eps[0]
    with h5py.File(gen.HANDOVER) as f:
        src = f["data/demo_0/actions"][()]
        states = f["data/demo_0/states"][()]
    assert ep.action_raw.tobytes() == src.astype(np.float32).tobytes()
    np.testing.assert_allclose(ep.action[:, sl(ACTION, "left_arm.eef_pos_delta")], np.clip(src[:, 0:3], -1, 1) * 0.05, atol=1e-7)
    np.testing.assert_allclose(ep.action[:, sl(ACTION, "right_arm.eef_rot_delta")], np.clip(src[:, 10:13], -1, 1) * 0.5, atol=1e-7)
    np.testing.assert_array_equal(ep.action[:, sl(ACTION, "right_arm.gripper")][:, 0], np.where(src[:, 13] > 0, 0, 1))
    # qpos = robot0 7 + 2 fingers, robot1 7 + 2 fingers, hammer free joint
    np.testing.assert_allclose(ep.state[:, sl(STATE, "right_arm.joint_pos")], states[:, 10:17], atol=1e-6)
    assert not ep.action_mask[sl(ACTION, "arm.eef_pos_delta")].any()
    assert ep.extra["unaligned"]["controller_info/counters"] == [1380]
    assert len(ep.extra["per_step"]["interventions"]) == 641
    assert ep.extra["metadata"]["task"] == "TwoArmHandover"


def test_robomimic_replay_images_are_flipped_upright(sim_fixtures, gen, read):
    conv = RobomimicConverter(str(gen.ROBOMIMIC_REPLAY))
    info = conv.datasets()[0]
    assert info.image_transform == "flip_vertical"
    assert info.cameras == {"primary": "obs/agentview_image", "wrist": "obs/robot0_eye_in_hand_image"}
    eps = read(conv)
    assert [e.length for e in eps] == [482, 510] and {e.split for e in eps} == {"train"}
    ep = eps[0]
    with h5py.File(gen.ROBOMIMIC_REPLAY) as f:
        stored = f["data/demo_0/obs/agentview_image"][()]
        quat = f["data/demo_0/obs/robot0_eef_quat"][()]
    for i in (0, 100, 481):
        np.testing.assert_array_equal(gen.decode(ep.images["primary"][i]), stored[i][::-1])  # PNG: lossless
    assert ep.extra["filters"] == ["train"] and ep.is_terminal[-1] and ep.reward is not None
    # xyzw quaternion → rotvec agrees with the LIBERO-layout copy's ee_ori (scipy's as_rotvec)
    with h5py.File(gen.LIBERO_REPLAY) as f:
        ori = f["data/demo_0/obs/ee_ori"][()]
    got = ep.state[:, sl(STATE, "arm.eef_rot")]
    assert np.abs(got - ori).max() < 1e-5 and quat.shape == (482, 4)
    validate_episode(ep, verify_images=True)


def test_rotate_180_option_and_jpeg(sim_fixtures, gen):
    conv = RobomimicConverter(str(gen.ROBOMIMIC_REPLAY),
                              ConverterOptions(extra={"image_orientation": "rotate_180", "image_format": "jpeg"}))
    assert conv.datasets()[0].image_transform == "rotate_180"
    ep = next(conv.read(conv.work_units(1 << 30)[0]))
    with h5py.File(gen.ROBOMIMIC_REPLAY) as f:
        stored = f["data/demo_0/obs/agentview_image"][0]
    got = gen.decode(ep.images["primary"][0]).astype(int)
    assert ep.images["primary"][0][:2] == b"\xff\xd8"
    assert np.abs(got - stored[::-1, ::-1]).mean() < 3 < np.abs(got - stored[::-1]).mean()


def test_masks_become_splits_and_filters(tmp_path, sim_fixtures, gen, read):
    p = tmp_path / "masked.hdf5"
    shutil.copy(gen.ROBOMIMIC_REPLAY, p)
    with h5py.File(p, "a") as f:
        del f["mask/train"]
        f["mask"].create_dataset("train", data=np.array([b"demo_0"]))
        f["mask"].create_dataset("valid", data=np.array([b"demo_1"]))
        f["mask"].create_dataset("20_percent", data=np.array([b"demo_1"]))
    eps = read(RobomimicConverter(str(p)))
    assert [(e.split, e.extra["filters"]) for e in eps] == [("train", ["train"]), ("valid", ["20_percent", "valid"])]
    only = read(RobomimicConverter(str(p), ConverterOptions(split="20_percent")))
    assert [(e.split, e.source_index) for e in only] == [("20_percent", 1)]


def test_sniff_picks_robomimic_for_both_layouts(sim_fixtures, gen):
    for p in (gen.LIFT_RAW, gen.WIPE_RAW, gen.HANDOVER, gen.ROBOMIMIC_REPLAY):
        assert sniff_converter(str(p)) == "robomimic"
    assert sniff_converter(str(gen.LIBERO_REPLAY)) == "libero"


def test_bad_inputs_are_named(tmp_path, sim_fixtures, gen, read):
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(gen.LIFT_RAW, d / "a_good.hdf5")
    with h5py.File(d / "b_nodata.hdf5", "w") as f:
        f.create_group("something_else")
    raw = gen.LIFT_RAW.read_bytes()
    (d / "c_truncated.hdf5").write_bytes(raw[: len(raw) // 2])
    bad = d / "d_bad.hdf5"
    shutil.copy(gen.LIFT_RAW, bad)
    with h5py.File(bad, "a") as f:
        a = f["data/demo_1/actions"][()]
        a[7, 2] = np.nan
        f["data/demo_1/actions"][...] = a
        s = f["data/demo_2/states"][()]
        del f["data/demo_2/states"]
        f["data/demo_2"].create_dataset("states", data=s[:-3])
    conv = RobomimicConverter(str(d))
    items = read(conv, target=200_000)
    good = [i for i in items if not isinstance(i, Rejected)]
    rej = {i.episode_key: i.code for i in items if isinstance(i, Rejected)}
    assert len(good) == 3 + 1  # a_good's three demos, d_bad's demo_3
    assert rej == {"robosuite_lift/train/b_nodata": "missing_data_group",
                   "robosuite_lift/train/c_truncated": "truncated_file",
                   "robosuite_lift/train/d_bad/demo_1": "non_finite_value",
                   "robosuite_lift/train/d_bad/demo_2": "length_mismatch"}
    for ep in good:
        validate_episode(ep)


def test_folder_mixing_layouts_and_embodiments(tmp_path, sim_fixtures, gen, read):
    d = tmp_path / "demos"
    d.mkdir()
    for name, src in (("lift.hdf5", gen.LIFT_RAW), ("handover.hdf5", gen.HANDOVER), ("wipe.hdf5", gen.WIPE_RAW),
                      ("replay.hdf5", gen.ROBOMIMIC_REPLAY)):
        shutil.copy(src, d / name)
    conv = RobomimicConverter(str(d))
    assert conv.datasets()[0].name == "robomimic_demos"
    assert any("several embodiments" in w for w in conv.warnings())
    eps = read(conv)
    by_file = {}
    for ep in eps:
        validate_episode(ep)
        by_file.setdefault(ep.extra["source_file"], set()).add((ep.embodiment, ep.action_raw.shape[1]))
    assert by_file == {"handover.hdf5": {("two_arm_panda_osc_pose", 14)}, "lift.hdf5": {("panda_osc_pose", 7)},
                       "replay.hdf5": {("panda_osc_pose", 7)}, "wipe.hdf5": {("panda_wipe_osc_pose", 6)}}
    assert sum(e.length for e in eps) == 2775 + 1384 + 174 + 992
