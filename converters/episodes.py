"""Episode assembly every converter shares: the row flags, action validity, the clock and the prompt.

A converter supplies one episode's arrays and metadata; the rest follows from its dataset (name,
task family, embodiment, rational fps) and the schema's row rules, so every family fills it alike.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from vlaflow.schemas import ACTION, STATE, Embodiment, Episode, step_timestamps_ns


@dataclass
class EpisodeFactory:
    dataset: str
    task_family: str
    embodiment: str  # id
    fps: Fraction  # the dataset's rate: the clock of constant-rate episodes and the rate the prompt states
    resolve: Callable[[str], Embodiment]  # embodiment id -> spec
    _prompts: dict = field(default_factory=dict, repr=False)

    def prompt(self, embodiment: str) -> str:
        if embodiment not in self._prompts:
            self._prompts[embodiment] = self.resolve(embodiment).prompt(rate_hz=float(self.fps))
        return self._prompts[embodiment]

    def __call__(self, episode_id: str, *, timestamp_ns=None, action=None, action_mask=None, action_raw=None,
                 state=None, state_mask=None, state_raw=None, is_first=None, is_terminal=True,
                 last_action_valid: bool = True, instruction="", instructions=None,
                 embodiment: str | None = None, **fields) -> Episode:
        """One episode; ``fields`` are the remaining ``Episode`` fields (images, reward, split, extra, ...).

        - length: of ``timestamp_ns`` when given (a measured clock), else of ``action``; timestamps default to
          ``round(i / fps)`` in integer ns;
        - no ``action``: every slot masked out and ``action_valid`` false; else valid, except the last row
          with ``last_action_valid=False`` (a source whose last action is undefined); no ``state``: masked out;
          a missing ``*_raw`` is ``[T, 0]``;
        - ``is_first`` marks row 0 unless the source's flags are given, ``is_last`` the final row;
          ``is_terminal`` a bool for the final row, or the source's per-step flags;
        - ``instructions`` (every text of the episode) defaults to the one ``instruction``;
        - ``embodiment`` overrides the dataset's for this episode (the prompt follows).
        """
        if timestamp_ns is None:
            if action is None:
                raise ValueError("make_episode needs timestamp_ns or action (the episode's length)")
            timestamp_ns = step_timestamps_ns(len(action), self.fps)
        t = len(timestamp_ns)
        valid = np.ones(t, bool) if action is not None else np.zeros(t, bool)
        if action is not None and not last_action_valid:
            valid[-1] = False
        if action is None:
            action, action_mask = np.zeros((t, ACTION.width), np.float32), np.zeros(ACTION.width, bool)
        if state is None:
            state, state_mask = np.zeros((t, STATE.width), np.float32), np.zeros(STATE.width, bool)
        first = np.arange(t) == 0 if is_first is None else is_first
        last = np.arange(t) == t - 1
        if isinstance(is_terminal, (bool, np.bool_)):
            is_terminal = last & bool(is_terminal)
        if instructions is None:
            instructions = [instruction] if isinstance(instruction, str) and instruction else []
        emb = embodiment or self.embodiment
        return Episode(
            dataset=self.dataset, episode_id=episode_id, embodiment=emb, embodiment_prompt=self.prompt(emb),
            task_family=self.task_family, timestamp_ns=np.asarray(timestamp_ns, np.int64),
            action=action, action_mask=action_mask,
            action_raw=np.zeros((t, 0), np.float32) if action_raw is None else action_raw,
            state=state, state_mask=state_mask,
            state_raw=np.zeros((t, 0), np.float32) if state_raw is None else state_raw,
            is_first=first, is_last=last, is_terminal=is_terminal, action_valid=valid,
            instruction=instruction, instructions=list(instructions), **fields)
