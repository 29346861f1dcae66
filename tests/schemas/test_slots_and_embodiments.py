import numpy as np
import pytest
import yaml

from vlaflow.schemas import (ACTION, STATE, Embodiment, EmbodimentRegistry, SpecError, get_embodiment,
                             load_embodiment_files)
from vlaflow.schemas.rotations import euler_xyz_to_quat_xyzw, quat_xyzw_to_rotvec, rotvec_to_matrix, to_rotvec


def test_slots_are_contiguous_and_named():
    names = ACTION.value_names()
    assert len(names) == ACTION.width
    assert names[:3] == ["arm.eef_pos_delta[0]", "arm.eef_pos_delta[1]", "arm.eef_pos_delta[2]"]
    a, b = ACTION.range("arm.gripper")
    assert b - a == 1
    mask = ACTION.mask_for(["arm.eef_pos_delta", "arm.gripper"])
    assert mask.sum() == 4 and mask[a]
    with pytest.raises(KeyError, match="unknown action slot"):
        ACTION.range("arm.nonsense")
    assert STATE.width == sum(s.width for s in STATE.slots)


def test_widowx_prompt_matches_the_spec_text():
    text = get_embodiment("widowx_250").prompt(rate_hz=5)
    assert text == ("Robot: WidowX 250, one 6-DoF arm with a parallel gripper. Action: end-effector "
                    "position delta (m) and rotation delta (rad, axis-angle) in the base frame at 5 Hz; "
                    "gripper 1 = open.")


def test_every_builtin_embodiment_renders_names_known_slots_and_round_trips():
    reg = EmbodimentRegistry.builtin()
    assert len(reg.ids()) >= 20
    for eid in reg.ids():
        e = reg.get(eid)
        assert e.prompt().startswith(("Robot:", "Human:", "Agent:", "No body:"))
        for s in e.action_slots:
            assert s in ACTION
        d = e.to_dict()
        back = Embodiment.from_dict(yaml.safe_load(yaml.safe_dump(d)), source="round trip")
        assert back == e and back.extra == e.extra and back.prompt(7) == e.prompt(7)
        assert back.to_dict() == d


MY_BOT = ("id: my_bot\nname: My Bot\nkind: robot\narms: [{name: left_arm, dof: 7, gripper: parallel},"
          " {name: right_arm, dof: 7, gripper: parallel}]\nbase: mobile\ncontrol_mode: joint_pos\n"
          "action_slots: [left_arm.joint_pos, left_arm.gripper, right_arm.joint_pos, right_arm.gripper, base.vel]\n"
          "frame: base\nrate_hz: 50\nmy_key: {a: 1}\n")


def test_user_embodiment_yaml(tmp_path):
    p = tmp_path / "my_bot.yaml"
    p.write_text(MY_BOT)
    specs = load_embodiment_files([p])
    assert list(specs) == ["my_bot"] and specs["my_bot"]["my_key"] == {"a": 1}  # extra keys travel too
    reg = EmbodimentRegistry.builtin().with_specs(specs)
    text = reg.get("my_bot").prompt()
    assert "two 7-DoF arms with parallel grippers and a mobile base" in text
    assert "left arm: absolute joint positions (rad)" in text and "at 50 Hz" in text
    assert "widowx_250" in reg and "my_bot" not in EmbodimentRegistry.builtin()  # a new registry, no global
    with pytest.raises(SpecError, match="unknown embodiment 'my_bot'"):
        get_embodiment("my_bot")
    # a folder stands for its *.yaml; a list of dicts (as read back from an output) works like a mapping
    assert load_embodiment_files([tmp_path]) == specs
    assert EmbodimentRegistry.builtin().with_specs(list(specs.values())).get("my_bot") == reg.get("my_bot")


def test_user_spec_overrides_a_builtin_in_its_own_registry_only(tmp_path):
    d = get_embodiment("widowx_250").to_dict()
    d["name"] = "WidowX with a longer wrist"
    reg = EmbodimentRegistry.builtin().with_specs([d])
    assert reg.get("widowx_250").prompt().startswith("Robot: WidowX with a longer wrist,")
    assert get_embodiment("widowx_250").name == "WidowX 250"


@pytest.mark.parametrize("text, where, problem", [
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: [arm.gripper, arm.warp_drive]\n",
     "action_slots[1]", "unknown action slot 'arm.warp_drive'"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: [arm.eef_pos_delt]\n",
     "action_slots[0]", "(did you mean 'arm.eef_pos_delta'?)"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\naction_slots: []\n", "frame", "missing"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: arm.gripper\n",
     "action_slots", "expected a list, got 'arm.gripper'"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: []\narms: [{name: a, dof: six}]\n",
     "arms[0].dof", "expected a positive integer, got 'six'"),
    ("id: x\nname: x\nkind: cyborg\ncontrol_mode: a\nframe: b\naction_slots: []\n", "kind", "'cyborg' is not one of"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: []\ncameras: [front]\n",
     "cameras[0]", "unknown camera role 'front'"),
    ("id: ../evil\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: []\n", "id", "a file name"),
    ("id: x\nname: x\nkind: robot\ncontrol_mode: a\nframe: b\naction_slots: []\nrate_hz: fast\n",
     "rate_hz", "expected a positive number"),
])
def test_embodiment_errors_are_one_line_with_file_key_and_problem(tmp_path, text, where, problem):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SpecError) as err:
        load_embodiment_files([p])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{p}: {where}: ") and problem in msg


def test_yaml_syntax_error_names_the_line_and_duplicate_ids_name_both_files(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("id: x\nname: [unclosed\nkind: robot\n")
    with pytest.raises(SpecError) as err:
        load_embodiment_files([p])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{p}: YAML syntax error at line ") and "column" in msg
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(MY_BOT)
    b.write_text(MY_BOT.replace("My Bot", "Other Bot"))
    with pytest.raises(SpecError, match=f"^{b}: id: 'my_bot' is already defined in {a}$"):
        load_embodiment_files([a, b])
    with pytest.raises(SpecError, match="cannot read embodiment spec"):
        load_embodiment_files([tmp_path / "missing.yaml"])
    (tmp_path / "list.yaml").write_text("- id: x\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_embodiment_files([tmp_path / "list.yaml"])


def test_rotations_against_matrices():
    rng = np.random.default_rng(0)
    e = rng.uniform(-1.2, 1.2, (50, 3))
    rv = to_rotvec(e, "euler_xyz").astype(np.float64)
    r, p, y = e[:, 0], e[:, 1], e[:, 2]

    def rx(a):
        return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])

    def ry(a):
        return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])

    def rz(a):
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    for i in range(len(e)):
        want = rz(y[i]) @ ry(p[i]) @ rx(r[i])
        np.testing.assert_allclose(rotvec_to_matrix(rv[i]), want, atol=1e-5)
    # pure roll is a rotation about x; quaternion orders agree; tiny rotations stay finite
    np.testing.assert_allclose(to_rotvec(np.array([0.3, 0, 0]), "euler_xyz"), [0.3, 0, 0], atol=1e-6)
    q = euler_xyz_to_quat_xyzw(e)
    np.testing.assert_allclose(to_rotvec(q[:, [3, 0, 1, 2]], "quat_wxyz"), to_rotvec(q, "quat_xyzw"), atol=1e-6)
    assert np.all(np.isfinite(quat_xyzw_to_rotvec(np.array([[0, 0, 0, 1.0], [1e-12, 0, 0, 1]]))))
