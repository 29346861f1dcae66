"""The shared row builder and the three navigation embodiments (step parameters as data, prompts)."""
import math

import numpy as np
from vlaflow.converters.episodes import EpisodeFactory
from vlaflow.converters.vln.rows import DECISION_FPS, TASK_FAMILY, discrete_commands, nav_arrays, step_params
from vlaflow.schemas import ACTION, STATE, get_embodiment, validate_episode


def prompt_for(embodiment: str) -> str:
    return get_embodiment(embodiment).prompt(rate_hz=float(DECISION_FPS))


def test_prompts_state_step_size_turn_angle_and_frame():
    graph = prompt_for("nav_discrete_graph")
    h15 = prompt_for("nav_habitat_15deg")
    h30 = prompt_for("nav_habitat_30deg")
    for text in (graph, h15, h30):
        assert text.startswith("Agent: ") and "x forward, y left, yaw + = left" in text and "frame" in text
        assert "future waypoints (x, y in m, yaw in rad)" in text
    assert "0.25 m" in h15 and "15 degrees" in h15 and "30" not in h15
    assert "0.25 m" in h30 and "turn left or right 30 degrees" in h30 and "look up or down 30 degrees" in h30
    assert "any angle" in graph and "edge length" in graph


def test_step_params_come_from_the_yaml():
    assert step_params(get_embodiment("nav_habitat_15deg")) == (0.25, math.radians(15), 0.0)
    assert step_params(get_embodiment("nav_habitat_30deg")) == (0.25, math.radians(30), math.radians(30))
    cmd = discrete_commands([1, 2, 3, 4, 5, 0], 0.25, math.radians(30), math.radians(30))
    np.testing.assert_allclose(cmd, [[0.25, 0, 0, 0], [0, math.radians(30), 0, 0], [0, -math.radians(30), 0, 0],
                                     [0, 0, math.radians(30), 0], [0, 0, -math.radians(30), 0], [0, 0, 0, 1]])


def test_nav_episode_masks_and_flags():
    poses = np.array([[0, 0, 0], [0.25, 0, 0], [0.25, 0, 0.5]])
    make = EpisodeFactory("d", TASK_FAMILY, "nav_habitat_15deg", DECISION_FPS, get_embodiment)
    ep = make("d/x/1", **nav_arrays(poses, discrete_commands([1, 2, 0], 0.25, 0.5, 0), np.array([[1], [2], [0]]),
                                    np.zeros((3, 0)), z=np.zeros(3)), instruction="go")
    validate_episode(ep)  # the prompt is the one validate expects
    assert ep.embodiment_prompt == prompt_for("nav_habitat_15deg")
    a, b = ACTION.range("nav.waypoints")
    assert ep.action_mask.shape == (3, ACTION.width)
    assert ep.action_mask[0, a:b].sum() == 6 and ep.action_mask[1, a:b].sum() == 3 and not ep.action_mask[2, a:b].any()
    assert ep.state_mask[slice(*STATE.range("base.pose"))].all() and ep.state_mask[STATE.range("base.z")[0]]
    assert ep.is_first.tolist() == [True, False, False]
    assert ep.is_last.tolist() == ep.is_terminal.tolist() == [False, False, True]
    assert ep.timestamp_ns.dtype == np.int64 and ep.timestamp_ns.tolist() == [0, 10**9, 2 * 10**9]
    assert ep.instructions == ["go"]
