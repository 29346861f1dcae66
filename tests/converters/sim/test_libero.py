"""LIBERO: generated release-layout files (instruction, gripper sign, OSC scaling, upright frames,
the 180° option) and the real LIBERO-layout replay fixture."""
from __future__ import annotations

import h5py
import numpy as np

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters import sniff as sniff_converter
from vlaflow.converters.sim import LiberoConverter
from vlaflow.converters.sim.libero import instruction_from_filename
from vlaflow.schemas import ACTION, STATE, validate_episode


def sl(layout, name):
    a, b = layout.range(name)
    return slice(a, b)


def test_libero_release_file(tmp_path, gen, read):
    p = tmp_path / "libero_10" / "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo.hdf5"
    truth = gen.write_libero(p)
    assert sniff_converter(str(p)) == "libero" and sniff_converter(str(p.parent)) == "libero"
    conv = LiberoConverter(str(p.parent))
    info = conv.datasets()[0]
    assert (info.name, info.embodiment, info.image_transform, float(info.fps)) == ("libero_10", "panda_osc_pose", "flip_vertical", 20)
    assert info.cameras == {"primary": "obs/agentview_rgb", "wrist": "obs/eye_in_hand_rgb"}
    eps = read(conv)
    assert [e.length for e in eps] == [6, 5]
    for ep in eps:
        validate_episode(ep, verify_images=True)
        name = ep.extra["demo"]
        a = truth["actions"][name]
        assert ep.action_raw.tobytes() == a.astype(np.float32).tobytes()
        assert ep.instruction == "turn on the stove and put the moka pot on it"
        assert ep.extra["instruction_source"] == "problem_info"
        np.testing.assert_allclose(ep.action[:, sl(ACTION, "arm.eef_pos_delta")], a[:, :3] * 0.05, atol=1e-7)
        np.testing.assert_allclose(ep.action[:, sl(ACTION, "arm.eef_rot_delta")], a[:, 3:6] * 0.5, atol=1e-6)
        # LIBERO gripper: -1 = open, +1 = close → 1 = open, 0 = closed
        np.testing.assert_array_equal(ep.action[:, sl(ACTION, "arm.gripper")][:, 0], np.where(a[:, 6] < 0, 1.0, 0.0))
        up = truth["upright"][name]
        for i in range(ep.length):  # stored upside down, normalized upright, PNG = lossless
            np.testing.assert_array_equal(gen.decode(ep.images["primary"][i]), up[i])
            np.testing.assert_array_equal(gen.decode(ep.images["wrist"][i]), up[i])
        assert ep.is_terminal[-1] and ep.reward[-1] == 1.0
        with h5py.File(p) as f:
            ori = f[f"data/{name}/obs/ee_ori"][()]
            grip = f[f"data/{name}/obs/gripper_states"][()]
        np.testing.assert_allclose(ep.state[:, sl(STATE, "arm.eef_rot")], ori, atol=1e-6)  # axis-angle as is
        np.testing.assert_allclose(ep.state[:, sl(STATE, "arm.gripper")][:, 0], (grip[:, 0] - grip[:, 1]) / 0.08, atol=1e-6)
        assert ep.state_raw.shape == (ep.length, 6 + 2 + 7)


def test_libero_rotate_180_option_mirrors(tmp_path, gen):
    p = tmp_path / "libero_goal" / "open_the_top_drawer_of_the_cabinet_demo.hdf5"
    truth = gen.write_libero(p, demos=(3,))
    conv = LiberoConverter(str(p), ConverterOptions(extra={"libero_image": "rotate_180"}))
    info = conv.datasets()[0]
    assert info.image_transform == "rotate_180" and any("mirrors" in n for n in info.notes)
    ep = next(conv.read(conv.work_units(1 << 30)[0]))
    up = truth["upright"]["demo_0"][0]
    np.testing.assert_array_equal(gen.decode(ep.images["primary"][0]), up[:, ::-1])  # upright, but mirrored
    assert not np.array_equal(up[:, ::-1], up)


def test_libero_instruction_from_file_name(tmp_path, gen, read):
    p = tmp_path / "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket_demo.hdf5"
    gen.write_libero(p, demos=(3,), with_problem_info=False)
    (ep,) = read(LiberoConverter(str(p)))
    assert ep.instruction == "put both the alphabet soup and the tomato sauce in the basket"
    assert ep.extra["instruction_source"] == "file_name"
    assert instruction_from_filename("pick_up_the_black_bowl_demo.hdf5") == "pick up the black bowl"
    assert instruction_from_filename("KITCHEN_SCENE10_close_the_top_drawer_demo.hdf5") == "close the top drawer"


def test_libero_bad_demos_are_quarantined(tmp_path, gen, read):
    p = tmp_path / "libero_spatial" / "pick_up_the_black_bowl_demo.hdf5"
    gen.write_libero(p, demos=(4, 5, 6), nan_in=0, short_obs_in=1)
    items = read(LiberoConverter(str(p)))
    assert [(i.episode_key.rsplit("/", 1)[-1], i.code) for i in items if isinstance(i, Rejected)] == [
        ("demo_0", "non_finite_value"), ("demo_1", "length_mismatch")]
    assert [i.length for i in items if not isinstance(i, Rejected)] == [6]


def test_libero_layout_replay_fixture(sim_fixtures, gen, read):
    conv = LiberoConverter(str(gen.LIBERO_REPLAY))
    eps = read(conv)
    assert [e.length for e in eps] == [482, 510]
    assert eps[0].instruction == "lift the red cube"
    with h5py.File(gen.LIBERO_REPLAY) as f:
        stored = f["data/demo_0/obs/agentview_rgb"][()]
        actions = f["data/demo_0/actions"][()]
    assert eps[0].action_raw.tobytes() == actions.astype(np.float32).tobytes()
    np.testing.assert_array_equal(gen.decode(eps[0].images["primary"][10]), stored[10][::-1])
    validate_episode(eps[0], verify_images=True)


def test_libero_user_spec_and_embodiment_travel_as_data(tmp_path, gen, read):
    """--spec and --embodiment as ConverterOptions data: the user's robot id and prompt on every row,
    the spec's fps used, and the files never read again after the options were built."""
    import pickle

    import yaml

    from vlaflow.converters.sim.common import spec_named
    from vlaflow.converters.standardize import spec_to_dict
    from vlaflow.schemas import get_embodiment, load_embodiment_files

    p = tmp_path / "libero_10" / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5"
    gen.write_libero(p, demos=(4,))
    emb = get_embodiment("panda_osc_pose").to_dict()
    emb.update(id="my_panda", name="Panda on a rail")
    (tmp_path / "my_panda.yaml").write_text(yaml.safe_dump(emb))
    spec = spec_to_dict(spec_named("libero"))
    spec.update(embodiment="my_panda", fps=10)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    opts = ConverterOptions(spec_file=str(tmp_path / "spec.yaml"),
                            embodiments=load_embodiment_files([tmp_path / "my_panda.yaml"]))
    (tmp_path / "spec.yaml").unlink()
    (tmp_path / "my_panda.yaml").unlink()
    conv = LiberoConverter(str(p.parent), pickle.loads(pickle.dumps(opts)))
    # the resolved spec is the user's, with the dataset name the converter derived from the file
    assert conv.resolved_spec() == {**spec, "dataset": conv.datasets()[0].name}
    assert conv.datasets()[0].embodiment == "my_panda"
    (ep,) = read(conv)
    validate_episode(ep)
    assert ep.embodiment == "my_panda" and ep.embodiment_prompt.startswith("Robot: Panda on a rail, one 7-DoF arm")
    assert ep.embodiment_prompt.endswith("at 10 Hz; gripper 1 = open.")
