"""EgoDex-style episodes with known poses, because real EgoDex data cannot be redistributed.

The ground truth is built in the camera frame (OpenCV: x right, y down, z forward) and mapped to an ARKit
world frame (y up, origin and heading random per episode) the way EgoDex stores it, so a reader that gets
the transforms right recovers it exactly. Frame i of the video is flat grey at ``frame_level(i)``: the
decoded frame names itself, which makes frame-accurate sampling checkable through lossy H.264.
Used by the tests, ``benchmarks/`` and as a template for users checking their own rigs.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from vlaflow.schemas.rotations import rotvec_to_matrix

FINGERS = ("Index", "Middle", "Ring", "Little")
FINGERTIPS = ("ThumbTip", "IndexFingerTip", "MiddleFingerTip", "RingFingerTip", "LittleFingerTip")
_BODY = ("hip",) + tuple(f"spine{i}" for i in range(1, 8)) + tuple(f"neck{i}" for i in range(1, 5))
_PER_SIDE = (("Shoulder", "Arm", "Forearm", "Hand", "ThumbKnuckle", "ThumbIntermediateBase",
              "ThumbIntermediateTip", "ThumbTip")
             + tuple(f"{f}Finger{p}" for f in FINGERS for p in ("Metacarpal", "Knuckle", "IntermediateBase",
                                                                 "IntermediateTip", "Tip")))
EGODEX_JOINTS = _BODY + tuple(f"{s}{j}" for s in ("left", "right") for j in _PER_SIDE)  # 68
GL_FROM_CV = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes → ARKit camera axes (its own inverse)
# fingertip offsets from the wrist in the wrist's frame (m): thumb .. little
_TIP_OFFSETS = np.array([[-0.04, 0.02, 0.06], [-0.02, 0.0, 0.10], [0.0, 0.0, 0.11], [0.02, 0.0, 0.10],
                         [0.04, 0.0, 0.08]])


def frame_level(i: int) -> int:
    return 10 + (5 * i) % 240


def frame_from_level(mean: float) -> int:
    """Inverse of ``frame_level`` for i < 48."""
    return int(round((mean - 10) / 5))


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def write_video(path: Path, n: int, fps: int, width: int, height: int, textured: bool = False) -> None:
    """``textured``: a moving noise texture instead of flat frames (realistic codec work for benchmarks;
    frames then do not name themselves)."""
    import av

    tex = np.random.default_rng(0).integers(40, 216, (2 * height, 2 * width, 3), np.uint8) if textured else None
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"crf": "18", "g": str(fps)})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.time_base = Fraction(1, fps)
        for i in range(n):
            if tex is not None:
                y, x = (2 * i) % height, (3 * i) % width
                img = np.ascontiguousarray(tex[y:y + height, x:x + width])
            else:
                img = np.full((height, width, 3), frame_level(i), np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def write_egodex_episode(folder, index: int, *, n_frames: int = 45, fps: int = 30, width: int = 192,
                         height: int = 144, seed: int = 0, task: str = "fold_towel", llm_type: str = "reversible",
                         which: int = 2, old_style: bool = False, with_confidences: bool = True,
                         static_camera: bool = False, occlude: tuple | None = None,
                         plant: dict | None = None, pose_frames: int | None = None, nan_at: tuple | None = None,
                         drop_intrinsic: bool = False, truncate_video: bool = False, write_mp4: bool = True,
                         textured: bool = False) -> dict:
    """Write ``<folder>/<index>.hdf5`` + ``.mp4``; return the ground truth (camera frame = OpenCV, float64).

    ``plant={"right": (frame, xyz_cv)}`` pins a wrist at a camera-frame point on one frame; ``occlude=(joint,
    frames)`` sets confidence 0; ``pose_frames`` writes a different number of pose frames than video frames;
    ``nan_at=(joint, frame)`` writes NaN into one transform."""
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = n_frames
    t = np.arange(n) / fps
    # camera → world (ARKit): random per-episode origin and heading, then a slow walk and head turn
    origin = rng.uniform(-3, 3, 3)
    yaw0 = rng.uniform(-np.pi, np.pi)
    cam = np.repeat(np.eye(4)[None], n, 0)
    for i in range(n):
        turn = 0.0 if static_camera else 0.4 * np.sin(0.7 * t[i])
        cam[i, :3, :3] = _rot_y(yaw0 + turn) @ _rot_x(-0.5)  # looking down at the hands
        cam[i, :3, 3] = origin + ([0, 0, 0] if static_camera else [0.1 * t[i], 0.02 * np.sin(2 * t[i]), -0.05 * t[i]])
    truth = {"intrinsic": None, "width": width, "height": height, "fps": fps, "camera_world": cam,
             "cam_wrist_pos": {}, "cam_wrist_rot": {}, "cam_fingertips": {}, "world_joints": {}}
    K = np.array([[736.6339 * width / 1920, 0, width / 2], [0, 736.6339 * width / 1920, height / 2], [0, 0, 1]])
    truth["intrinsic"] = K
    world: dict[str, np.ndarray] = {}

    def to_world(p_cv, R_cv=None):
        """Camera-frame (OpenCV) point / rotation at each frame → ARKit world transforms [n,4,4]."""
        T = np.repeat(np.eye(4)[None], n, 0)
        R_wc, t_wc = cam[:, :3, :3], cam[:, :3, 3]
        T[:, :3, 3] = np.einsum("nab,nb->na", R_wc, p_cv @ GL_FROM_CV.T) + t_wc
        if R_cv is not None:
            T[:, :3, :3] = R_wc @ GL_FROM_CV @ R_cv
        return T

    for side, sx in (("left", -1.0), ("right", 1.0)):
        phase = rng.uniform(0, 2 * np.pi)
        wrist = np.stack([sx * 0.12 + 0.05 * np.sin(1.3 * t + phase), 0.08 + 0.03 * np.cos(1.1 * t + phase),
                          0.5 + 0.1 * np.sin(0.9 * t + phase)], 1)
        if plant and side in plant:
            f, xyz = plant[side]
            wrist[f] = xyz
        rv = np.stack([0.3 * np.sin(t + phase), 0.5 + 0.2 * np.cos(0.8 * t), sx * 0.4 * np.sin(0.6 * t)], 1)
        R = rotvec_to_matrix(rv)
        tips = wrist[:, None, :] + np.einsum("nab,kb->nka", R, _TIP_OFFSETS * [sx, 1, 1])
        truth["cam_wrist_pos"][side], truth["cam_wrist_rot"][side], truth["cam_fingertips"][side] = wrist, R, tips
        world[f"{side}Hand"] = to_world(wrist, R)
        for k, name in enumerate(FINGERTIPS):
            world[f"{side}{name}"] = to_world(tips[:, k], R)
    for j in EGODEX_JOINTS:
        if j not in world:  # body and finger-base joints: plausible, not checked
            world[j] = to_world(np.tile(rng.uniform(-0.3, 0.3, 3) + [0, 0.3, 0.3], (n, 1)), np.eye(3)[None].repeat(n, 0))
    world["camera"] = cam
    truth["world_joints"] = world
    m = pose_frames if pose_frames is not None else n
    with h5py.File(folder / f"{index}.hdf5", "w") as f:
        if not drop_intrinsic:
            f.create_dataset("camera/intrinsic", data=K.astype(np.float32))
        for j, T in world.items():
            T = np.concatenate([T, np.repeat(T[-1:], max(0, m - n), 0)])[:m].astype(np.float32)
            if nan_at and nan_at[0] == j:
                T[nan_at[1]] = np.nan
            f.create_dataset(f"transforms/{j}", data=T)
        if with_confidences:
            for j in EGODEX_JOINTS:
                c = np.full(m, 0.9, np.float32)
                if occlude and occlude[0] == j:
                    c[list(occlude[1])] = 0.0
                f.create_dataset(f"confidences/{j}", data=c)
        d1, d2 = f"{task.replace('_', ' ')} with both hands", f"undo: {task.replace('_', ' ')}"
        if old_style:
            f.attrs["description"] = d1
            truth["instruction"] = d1
        else:
            f.attrs.update({"llm_description": d1, "llm_description2": d2, "which_llm_description": which,
                            "llm_type": llm_type})
            truth["instruction"] = d2 if llm_type == "reversible" and which == 2 else d1
        f.attrs.update({"task": task, "environment": "kitchen_table", "object": "towel"})
    if write_mp4:
        mp4 = folder / f"{index}.mp4"
        write_video(mp4, n, fps, width, height, textured)
        if truncate_video:
            data = mp4.read_bytes()
            mp4.write_bytes(data[: len(data) // 2])
    return truth
