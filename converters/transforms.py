"""Named, tested per-trajectory functions that dataset specs refer to by name.

Per-dataset standardization is data (a YAML spec); these few functions are the only code. Each
takes a [T] or [T, k] array over one episode's steps and returns an array of the same length.
``transform_table`` lists every one of them (the simulation ones from ``sim/transforms.py`` too)
in one place, so a spec may name any transform whatever was imported before.
"""
from __future__ import annotations

import io
from functools import lru_cache
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from vlaflow.schemas.rotations import matrix_to_rotvec


def _col(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, 0] if x.ndim == 2 and x.shape[1] == 1 else x


def binarize_gripper(x, open_above: float = 0.95, closed_below: float = 0.05) -> np.ndarray:
    """Continuous gripper (1 = open) → {0, 1}; in-between values take the next settled value.

    Octo's version seeds the backward scan with the raw last value, which can leave a
    non-binary value at the end; here the seed is the last value rounded, so output is binary.
    """
    x = _col(x)
    out = np.empty_like(x)
    carry = 1.0 if x[-1] >= 0.5 else 0.0
    for i in range(len(x) - 1, -1, -1):
        if x[i] > open_above:
            carry = 1.0
        elif x[i] < closed_below:
            carry = 0.0
        out[i] = carry
    return out


def rel2abs_gripper(x) -> np.ndarray:
    """Relative gripper events (+1 close, -1 open, 0 hold) → absolute state, 1 = open.

    Before the first event the gripper is assumed to be in the state opposite to that event
    (closing first ⇒ it was open); with no event at all it stays open.
    """
    x = _col(x)
    thr = np.where(x < -0.1, 1.0, np.where(x > 0.1, -1.0, 0.0))  # +1 = open event, -1 = close
    nz = np.nonzero(thr)[0]
    carry = -thr[nz[0]] if len(nz) else 1.0
    out = np.empty_like(x)
    for i, v in enumerate(thr):
        if v != 0:
            carry = v
        out[i] = carry
    return out / 2 + 0.5


def invert_gripper(x) -> np.ndarray:
    """1 - x: for sources where 1 = closed."""
    return 1.0 - _col(x)


def clip01(x) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)


def signed_to_unit(x) -> np.ndarray:
    """[-1, 1] → [0, 1] (e.g. -1 = closed, +1 = open)."""
    return (np.asarray(x, dtype=np.float64) + 1.0) / 2.0


def bool_to_float(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def scale(x, factor: float = 1.0) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) * factor


def relabel_from_state(x) -> np.ndarray:
    """Action as the state actually reached: a[t] = s[t+1] - s[t]; the last step has no next
    state, so it is zero (and marked invalid by the RLDS last-step rule)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    out[:-1] = x[1:] - x[:-1]
    return out


relabel_from_state.invalidates_last = True  # the pipeline marks the last action invalid


def euler_to_rotvec(x, seq: str = "xyz") -> np.ndarray:
    """Euler angles in any axis order → rotation vectors, with scipy's ``Rotation.from_euler`` semantics.

    ``seq`` lowercase = extrinsic (fixed axes), uppercase = intrinsic; angle i turns about axis ``seq[i]``.
    For sources that are not roll-pitch-yaw "xyz" (the only Euler order a spec's ``rotation:`` knows),
    e.g. DLR EDAN's ``as_euler("zxy")``.
    """
    if len(seq) != 3 or not (seq.islower() or seq.isupper()) or set(seq.lower()) - set("xyz") \
            or any(a == b for a, b in zip(seq.lower(), seq.lower()[1:])):
        raise ValueError(f"euler_to_rotvec: seq must be 3 axes from xyz, all lower or all upper case, "
                         f"no axis twice in a row; got {seq!r}")
    e = np.asarray(x, dtype=np.float64).reshape(-1, 3)

    def elementary(axis: str, a: np.ndarray) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((len(a), 3, 3))
        i = "xyz".index(axis)
        j, k = (i + 1) % 3, (i + 2) % 3
        m[:, i, i] = 1.0
        m[:, j, j], m[:, j, k], m[:, k, j], m[:, k, k] = c, -s, s, c
        return m

    mats = [elementary(ax, e[:, n]) for n, ax in enumerate(seq.lower())]
    # extrinsic: later rotations act from the left; intrinsic: from the right
    r = mats[2] @ mats[1] @ mats[0] if seq.islower() else mats[0] @ mats[1] @ mats[2]
    return matrix_to_rotvec(r)
def pose_matrix_rotvec(x, order: str = "F") -> np.ndarray:
    """Flattened 4x4 homogeneous poses [T, 16] -> their orientation as rotation vectors [T, 3].

    ``order`` is how the 16 values run: "F" column-major (libfranka's O_T_EE, so deoxys-recorded
    Franka data), "C" row-major.
    """
    if order not in ("C", "F"):
        raise ValueError(f"pose_matrix_rotvec: order must be 'C' or 'F', got {order!r}")
    m = np.asarray(x, dtype=np.float64).reshape(-1, 4, 4)
    if order == "F":
        m = np.swapaxes(m, -1, -2)
    return matrix_to_rotvec(m[:, :3, :3])


@lru_cache(maxsize=1)
def transform_table() -> Mapping[str, Callable[..., np.ndarray]]:
    """name -> function for every transform a spec may name.

    Built on first use: the sim functions live in the ``sim`` package, whose converters import this
    module, so importing them at the top would be circular.
    """
    from .sim import transforms as sim

    fns = (binarize_gripper, rel2abs_gripper, invert_gripper, clip01, signed_to_unit, bool_to_float, scale,
           relabel_from_state, sim.osc_scale, sim.sign_gripper, sim.finger_opening, sim.clip_range, sim.next_step,
           sim.maniskill3_ee_delta_rot, sim.norm_clip_scale, euler_to_rotvec, pose_matrix_rotvec)
    return MappingProxyType({fn.__name__: fn for fn in fns})


def codepoints_to_text(codes: np.ndarray) -> str:
    """language_table stores instructions as zero-padded int32 Unicode code points."""
    codes = np.asarray(codes).reshape(-1)
    codes = codes[codes != 0]
    return "".join(chr(int(c)) for c in codes)


def bgr_to_rgb_image(data: bytes, quality: int = 95) -> bytes:
    """Swap channels of an encoded frame stored as BGR (re-encodes in the source format)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    fmt = img.format or "JPEG"
    arr = np.asarray(img.convert("RGB"))[:, :, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=fmt, quality=quality)
    return buf.getvalue()
