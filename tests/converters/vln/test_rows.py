"""The shared row builder and the three navigation embodiments (step parameters as data, prompts)."""
import math

import numpy as np
from vlaflow.converters.vln.rows import DECISION_FPS, discrete_commands, nav_episode, prompt_for, step_params
from vlaflow.schemas import ACTION, STATE, get_embodiment, validate_episode


def prompt_of(eid: str) -> str:
    return prompt_for(get_embodiment(eid))


def test_prompts_state_step_size_turn_angle_and_frame():
    graph = prompt_of("nav_discrete_graph")
    h15 = prompt_of("nav_habitat_15deg")
    h30 = prompt_of("nav_habitat_30deg")
    for text in (graph, h15, h30):
        assert text.startswith("Agent: ") and "x forward, y left, yaw + = left" in text and "frame" in text
        assert "future waypoints (x, y in m, yaw in rad)" in text
    assert "0.25 m" in h15 and "15 degrees" in h15 and "30" not in h15
    assert "0.25 m" in h30 and "turn left or right 30 degrees" in h30 and "look up or down 30 degrees" in h30
    assert "any angle" in graph and "edge length" in graph
    assert get_embodiment("nav_habitat_15deg").prompt(rate_hz=float(DECISION_FPS)) == h15  # what validate expects


def test_step_params_come_from_the_yaml():
    assert step_params(get_embodiment("nav_habitat_15deg")) == (0.25, math.radians(15), 0.0)
    assert step_params(get_embodiment("nav_habitat_30deg")) == (0.25, math.radians(30), math.radians(30))
    cmd = discrete_commands([1, 2, 3, 4, 5, 0], 0.25, math.radians(30), math.radians(30))
    np.testing.assert_allclose(cmd, [[0.25, 0, 0, 0], [0, math.radians(30), 0, 0], [0, -math.radians(30), 0, 0],
                                     [0, 0, math.radians(30), 0], [0, 0, -math.radians(30), 0], [0, 0, 0, 1]])


def test_nav_episode_masks_and_flags():
    poses = np.array([[0, 0, 0], [0.25, 0, 0], [0.25, 0, 0.5]])
    ep = nav_episode(dataset="d", episode_id="d/x/1", embodiment="nav_habitat_15deg",
                     prompt=prompt_of("nav_habitat_15deg"), poses=poses, z=np.zeros(3),
                     commands=discrete_commands([1, 2, 0], 0.25, 0.5, 0), action_raw=np.array([[1], [2], [0]]),
                     state_raw=np.zeros((3, 0)), instruction="go")
    validate_episode(ep)
    a, b = ACTION.range("nav.waypoints")
    assert ep.action_mask.shape == (3, ACTION.width)
    assert ep.action_mask[0, a:b].sum() == 6 and ep.action_mask[1, a:b].sum() == 3 and not ep.action_mask[2, a:b].any()
    assert ep.state_mask[slice(*STATE.range("base.pose"))].all() and ep.state_mask[STATE.range("base.z")[0]]
    assert ep.is_first.tolist() == [True, False, False]
    assert ep.is_last.tolist() == ep.is_terminal.tolist() == [False, False, True]
    assert ep.timestamp_ns.dtype == np.int64 and ep.timestamp_ns.tolist() == [0, 10**9, 2 * 10**9]
    assert ep.instructions == ["go"]
