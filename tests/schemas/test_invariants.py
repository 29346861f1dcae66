"""Each invariant is defined once: the episode check (before writing) and the table check (`vlaflow validate`)
report the same problem for the same broken data; the table check also sees what spans episodes."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vlaflow.schemas import ACTION, EpisodeError, episodes_to_table, validate_episode
from vlaflow.schemas.invariants import INVARIANT, NON_FINITE, check_step_table

_spec = importlib.util.spec_from_file_location("_ep", Path(__file__).with_name("test_episode.py"))
_ep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ep)
make_episode = _ep.make_episode


def _gripper():
    return ACTION.range("arm.gripper")[0]


BREAKS = [
    ("masked-out", INVARIANT, lambda ep: ep.action.__setitem__((1, 100), 2.0), "action has non-zero values in masked-out"),
    ("nan", NON_FINITE, lambda ep: ep.action.__setitem__((2, _gripper()), np.nan),
     "non-finite action value in arm.gripper[0] at step 2"),
    ("time", INVARIANT, lambda ep: ep.timestamp_ns.__setitem__(2, ep.timestamp_ns[1]), "timestamp_ns not strictly increasing"),
    ("first", INVARIANT, lambda ep: ep.is_first.__setitem__(2, True), "is_first must be set exactly"),
    ("last", INVARIANT, lambda ep: ep.is_last.__setitem__(1, True), "is_last must be set exactly"),
    ("terminal", INVARIANT, lambda ep: ep.is_terminal.__setitem__(0, True), "is_terminal set before"),
]


@pytest.mark.parametrize("name,code,brk,message", BREAKS, ids=[b[0] for b in BREAKS])
def test_episode_and_table_checks_agree(name, code, brk, message):
    ep = make_episode(t=5)
    validate_episode(ep)
    assert check_step_table(episodes_to_table([ep])) == []
    bad = copy.deepcopy(ep)
    brk(bad)
    table = episodes_to_table([bad])  # the same broken rows, as written
    with pytest.raises(EpisodeError) as err:
        validate_episode(bad)
    assert err.value.code == code and message in str(err.value)
    problems = check_step_table(table)
    assert [p.code for p in problems] == [code] and message in problems[0].message


def test_table_check_sees_what_spans_episodes():
    a, b = make_episode(t=3), make_episode(t=3, episode_id="d/1")
    ok = episodes_to_table([a, b])
    assert check_step_table(ok) == []
    again = pa.concat_tables([ok, episodes_to_table([a])])  # d/0 appears twice, not contiguous
    msgs = [p.message for p in check_step_table(again)]
    assert "an episode's steps are not contiguous" in msgs
    shuffled = ok.take(pa.array([0, 2, 1, 3, 4, 5]))
    msgs = [p.message for p in check_step_table(shuffled)]
    assert any(m.startswith("step_index not 0..T-1 in episode d/0") for m in msgs)
