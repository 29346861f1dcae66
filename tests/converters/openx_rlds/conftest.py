"""Generators for RLDS variants the real fixture lacks, written with ``openx_rlds.synth``."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.converters.openx_rlds.synth import (TEMPLATE_INDEX, encode_jpeg, encode_png, sample_frame,
                                                  write_rlds_dataset)


def _features(steps: dict, meta: dict | None = None):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import features as F

    d = {"steps": tfds.features.Dataset(F.FeaturesDict(steps))}
    if meta:
        d["episode_metadata"] = F.FeaturesDict(meta)
    return F.FeaturesDict(d)


def _flags(t):
    return [{"is_first": i == 0, "is_last": i == t - 1, "is_terminal": i == t - 1} for i in range(t)]


def _flag_features():
    from tensorflow_datasets.core import features as F

    return {k: F.Scalar(dtype=np.bool_) for k in ("is_first", "is_last", "is_terminal")}


@pytest.fixture
def fractal_like(tmp_path):
    """RT-1 layout: dict action, instruction inside observation, quaternion pose."""
    from tensorflow_datasets.core import features as F

    steps = {
        "action": F.FeaturesDict({
            "world_vector": F.Tensor(shape=(3,), dtype=np.float32),
            "rotation_delta": F.Tensor(shape=(3,), dtype=np.float32),
            "gripper_closedness_action": F.Tensor(shape=(1,), dtype=np.float32),
            "terminate_episode": F.Tensor(shape=(3,), dtype=np.int32),
            "base_displacement_vector": F.Tensor(shape=(2,), dtype=np.float32),
        }),
        "observation": F.FeaturesDict({
            "image": F.Image(shape=(32, 32, 3), dtype=np.uint8, encoding_format="jpeg"),
            "natural_language_instruction": F.Text(),
            "base_pose_tool_reached": F.Tensor(shape=(7,), dtype=np.float32),
            "gripper_closed": F.Tensor(shape=(1,), dtype=np.float32),
        }),
        "reward": F.Scalar(dtype=np.float32), **_flag_features(),
    }
    rng = np.random.default_rng(1)
    eps = []
    for e in range(6):
        t = 5 + e
        grip = np.zeros(t, np.float32)
        grip[2] = 1.0  # close event at step 2
        eps.append({"steps": [{
            "action": {"world_vector": rng.normal(size=3).astype(np.float32),
                       "rotation_delta": rng.normal(size=3).astype(np.float32) * 0.1,
                       "gripper_closedness_action": grip[i:i + 1],
                       "terminate_episode": np.array([0, 1, 0], np.int32),
                       "base_displacement_vector": np.zeros(2, np.float32)},
            "observation": {"image": encode_jpeg(sample_frame(rng, i, 32)),
                            "natural_language_instruction": f"pick object {e}",
                            "base_pose_tool_reached": np.r_[rng.normal(size=3), 0, 0, 0, 1].astype(np.float32),
                            "gripper_closed": np.array([float(i >= 2)], np.float32)},
            "reward": 0.0, **_flags(t)[i]} for i in range(t)]})
    root = write_rlds_dataset(tmp_path, "fractal20220817_data", "0.1.0", _features(steps), {"train": eps},
                              shards_per_split=3, template=TEMPLATE_INDEX)
    return root, eps


@pytest.fixture
def droid_like(tmp_path):
    """float64 tensors (float32 on the wire), three instructions, top-level language keys."""
    from tensorflow_datasets.core import features as F

    steps = {
        "action_dict": F.FeaturesDict({
            "cartesian_velocity": F.Tensor(shape=(6,), dtype=np.float64),
            "gripper_position": F.Tensor(shape=(1,), dtype=np.float64)}),
        "action": F.Tensor(shape=(7,), dtype=np.float64),
        "observation": F.FeaturesDict({
            "exterior_image_1_left": F.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="jpeg"),
            "exterior_image_2_left": F.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="jpeg"),
            "wrist_image_left": F.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="jpeg"),
            "cartesian_position": F.Tensor(shape=(6,), dtype=np.float64),
            "joint_position": F.Tensor(shape=(7,), dtype=np.float64),
            "gripper_position": F.Tensor(shape=(1,), dtype=np.float64)}),
        "language_instruction": F.Text(), "language_instruction_2": F.Text(), "language_instruction_3": F.Text(),
        **_flag_features(),
    }
    rng = np.random.default_rng(2)
    eps = []
    for e in range(3):
        t = 4
        eps.append({"steps": [{
            "action_dict": {"cartesian_velocity": rng.normal(size=6) * 0.1 + 1e-9,
                            "gripper_position": np.array([0.25])},
            "action": rng.normal(size=7),
            "observation": {**{k: encode_jpeg(sample_frame(rng, i, 16)) for k in
                               ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")},
                            "cartesian_position": rng.normal(size=6), "joint_position": rng.normal(size=7),
                            "gripper_position": np.array([0.25])},
            "language_instruction": "put the marker in the cup", "language_instruction_2": "marker into cup",
            "language_instruction_3": "", **_flags(t)[i]} for i in range(t)]})
    root = write_rlds_dataset(tmp_path, "droid", "1.0.0", _features(steps), {"train": eps})
    return root, eps


@pytest.fixture
def sensor_variants(tmp_path):
    """kuka-like zlib tensor, taco-like uint16 PNG depth, language_table code points, unknown name."""
    from tensorflow_datasets.core import features as F

    steps = {
        "action": F.Tensor(shape=(2,), dtype=np.float32),
        "observation": F.FeaturesDict({
            "rgb": F.Image(shape=(16, 16, 3), dtype=np.uint8, encoding_format="jpeg"),
            "depth": F.Image(shape=(16, 16, 1), dtype=np.uint16, encoding_format="png"),
            "instruction": F.Tensor(shape=(24,), dtype=np.int32),
            "effector_translation": F.Tensor(shape=(2,), dtype=np.float32, encoding="zlib"),
        }),
        "reward": F.Scalar(dtype=np.float32), **_flag_features(),
    }
    rng = np.random.default_rng(3)
    text = "push the red star"
    codes = np.zeros(24, np.int32)
    codes[:len(text)] = [ord(c) for c in text]
    eps = [{"steps": [{
        "action": rng.normal(size=2).astype(np.float32),
        "observation": {"rgb": encode_jpeg(sample_frame(rng, i, 16)),
                        "depth": encode_png((rng.integers(0, 65535, (16, 16))).astype(np.uint16)),
                        "instruction": codes, "effector_translation": rng.normal(size=2).astype(np.float32)},
        "reward": 0.0, **_flags(3)[i]} for i in range(3)]} for _ in range(2)]

    def write(name: str):
        return write_rlds_dataset(tmp_path / name, name, "0.1.0", _features(steps), {"train": eps})

    return write, eps
