"""One episode checked before it is written: shapes and encodings here, the step invariants (shared with
``vlaflow validate``) in ``invariants.py``."""
from __future__ import annotations

import numpy as np

from .columns import CAMERA_ROLES, VISION_LANGUAGE, VL_IMAGE_ROLES
from .episode import Episode
from .errors import (
    FeatureMismatch,
    InvariantViolation,
    NonFiniteValue,
    NonUtf8Text,
    PlaceholderMismatch,
    UndecodableImage,
    UnknownRole,
)
from .invariants import (
    NON_FINITE,
    NON_UTF8,
    PLACEHOLDER_MISMATCH,
    UNKNOWN_ROLE,
    Problem,
    conversation_values,
    masked_values,
    sequencing,
    task_family,
    trajectory_values,
)
from .slots import ACTION, STATE, TRAJ_HORIZON, TRAJECTORY

_JPEG_SOI, _PNG_SIG = b"\xff\xd8", b"\x89PNG\r\n\x1a\n"


def check_image_bytes(data: bytes, where: str) -> None:
    """Structural check of an encoded frame: cheap enough for every image of every step."""
    if data[:2] == _JPEG_SOI:
        tail = data[-2:] if len(data) >= 4 else b""
        # A baseline JPEG ends with EOI; some encoders pad after it, so look a little back.
        if tail != b"\xff\xd9" and b"\xff\xd9" not in data[-64:]:
            raise UndecodableImage(f"{where}: JPEG has no end-of-image marker (truncated?)")
        return
    if data[:8] == _PNG_SIG:
        if b"IEND" not in data[-16:]:
            raise UndecodableImage(f"{where}: PNG has no IEND chunk (truncated?)")
        return
    raise UndecodableImage(f"{where}: not a JPEG or PNG ({data[:8]!r})")


def decode_image(data: bytes, where: str):
    """Full decode (``--verify-images``); returns a PIL image."""
    import io

    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except Exception as err:  # PIL raises many types for bad data
        raise UndecodableImage(f"{where}: {type(err).__name__}: {err}") from None


_ERRORS = {NON_FINITE: NonFiniteValue, UNKNOWN_ROLE: UnknownRole, PLACEHOLDER_MISMATCH: PlaceholderMismatch,
           NON_UTF8: NonUtf8Text}


def _raise_first(eid: str, problems: list[Problem]) -> None:
    if problems:
        p = problems[0]
        raise _ERRORS.get(p.code, InvariantViolation)(f"{eid}: {p.message}")


def _check_conversation(ep: Episode) -> None:
    """Shapes of ``ep.conversation`` here; the row rules (roles, UTF-8, placeholders vs images, nothing to act
    on) are ``invariants.conversation_values``, shared with ``vlaflow validate``."""
    t, eid = ep.length, ep.episode_id
    conv = ep.conversation if ep.conversation is not None else [None] * t
    if not isinstance(conv, list) or len(conv) != t:
        raise FeatureMismatch(f"{eid}: conversation needs one entry per step ({t}), got "
                              f"{len(conv) if isinstance(conv, list) else type(conv).__name__}")
    for i, turns in enumerate(conv):
        if turns is None:
            continue
        if not isinstance(turns, list):
            raise FeatureMismatch(f"{eid}: conversation at step {i} is not a list of turns")
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) \
                    or not isinstance(turn.get("text"), str):
                raise FeatureMismatch(f"{eid}: conversation turn {k} at step {i} needs a string role and text")
    images = np.zeros(t, np.int64)
    for role in VL_IMAGE_ROLES:
        frames = ep.images.get(role)
        if frames is not None:
            images += np.array([f is not None for f in frames], np.int64)
        if role in ep.videos:
            images += 1
    used = lambda m: np.broadcast_to(np.asarray(m, bool), (t, np.shape(m)[-1])).any(axis=1)  # noqa: E731
    traj = np.full(t, ep.trajectory is not None)
    _raise_first(eid, conversation_values(np.full(t, eid, object), np.full(t, ep.task_family, object), conv,
                                          images, used(ep.action_mask), used(ep.state_mask), traj))


def validate_episode(ep: Episode, *, verify_images: bool = False) -> None:
    """Shapes, then the step invariants of ``invariants.py``: the first problem is the quarantine reason."""
    t = ep.length
    eid = ep.episode_id
    if t < 1:
        raise InvariantViolation(f"{eid}: episode has no steps")
    _raise_first(eid, task_family([ep.task_family]))
    for name, arr, width in (("action", ep.action, ACTION.width), ("state", ep.state, STATE.width)):
        if arr.shape != (t, width):
            raise FeatureMismatch(f"{eid}: {name} has shape {arr.shape}, expected {(t, width)}")
    for name, arr in (("action_raw", ep.action_raw), ("state_raw", ep.state_raw)):
        if arr.ndim != 2 or arr.shape[0] != t:
            raise FeatureMismatch(f"{eid}: {name} has shape {arr.shape}, expected ({t}, k)")
    for name in ("is_first", "is_last", "is_terminal", "action_valid", "timestamp_ns"):
        if np.shape(getattr(ep, name)) != (t,):
            raise FeatureMismatch(f"{eid}: {name} has length {len(getattr(ep, name))}, expected {t}")
    _raise_first(eid, sequencing(np.zeros(t, np.int8), ep.is_first, ep.is_last, ep.is_terminal, ep.timestamp_ns))
    valid = np.asarray(ep.action_valid, bool)
    _raise_first(eid, masked_values("action", ep.action, ep.action_mask, ACTION, valid)
                 + masked_values("state", ep.state, ep.state_mask, STATE))
    raw_bad = ~np.isfinite(ep.action_raw[valid])
    if raw_bad.any():
        step = int(np.nonzero(raw_bad.any(axis=1))[0][0])
        raise NonFiniteValue(f"{eid}: non-finite action_raw at step {step}")
    if ep.trajectory is not None:
        shape = (t, TRAJ_HORIZON, TRAJECTORY.width)
        traj, tmask = np.asarray(ep.trajectory), np.asarray(ep.trajectory_mask)
        if traj.shape != shape or tmask.shape != shape:
            raise FeatureMismatch(f"{eid}: trajectory / trajectory_mask have shapes {traj.shape} / {tmask.shape}, "
                                  f"expected {shape}")
        _raise_first(eid, trajectory_values(traj, tmask))
    if ep.conversation is not None or ep.task_family == VISION_LANGUAGE:
        _check_conversation(ep)
    for role, clip in ep.videos.items():
        if role not in CAMERA_ROLES:
            raise InvariantViolation(f"{eid}: unknown camera role {role!r}")
        idx = np.asarray(clip.frame_index)
        if idx.shape != (t,) or (t and idx.min() < 0):
            raise FeatureMismatch(f"{eid}: video {role} needs {t} non-negative frame indices, got {idx.shape}")
        if ep.images.get(role) is not None:
            raise InvariantViolation(f"{eid}: camera {role} stored both as images and as video")
    for role, frames in ep.images.items():
        if role not in CAMERA_ROLES:
            raise InvariantViolation(f"{eid}: unknown camera role {role!r}")
        if frames is None:
            continue
        if len(frames) != t:
            raise FeatureMismatch(f"{eid}: camera {role} has {len(frames)} frames for {t} steps")
        for i, data in enumerate(frames):
            if data is None:
                continue
            where = f"{eid}: images.{role} step {i}"
            check_image_bytes(data, where)
            if verify_images:
                decode_image(data, where)
