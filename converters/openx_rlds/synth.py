"""Synthetic RLDS datasets: builder dirs as TFDS writes them, without TensorFlow.

Used for the README's sample job (``vlaflow sample-rlds``) and for test variants the real fixture lacks (dict actions,
float64, depth PNG, zlib tensors, several shards, both shard-name templates). Examples are encoded
with tensorflow-datasets' own ``encode_example`` and ``ExampleSerializer``; images must be given
already encoded (bytes), as TFDS needs TensorFlow to encode arrays.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .tfrecord import frame

TEMPLATE_OF = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
TEMPLATE_INDEX = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}"


def shard_name(name: str, split: str, i: int, n: int, template: str = TEMPLATE_OF) -> str:
    suffix = f"{i:05d}-of-{n:05d}" if template == TEMPLATE_OF else f"{i:05d}"
    return f"{name}-{split}.tfrecord-{suffix}"


@contextlib.contextmanager
def _without_tensorflow():
    """Two places where TFDS's writer calls TensorFlow for what NumPy and PIL do the same way: the dtype of a
    nested ragged feature (``Sequence`` inside ``steps``), only copied into another TensorInfo, and encoding
    an image given as an array (float32 depth images are PNGs of the floats' bytes as 4 uint8 channels)."""
    from tensorflow_datasets.core.features import feature as feature_lib, image_feature

    def encode_with_pil(self, np_image: np.ndarray) -> bytes:
        arr = np.asarray(np_image)
        return encode_png(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr) \
            if self.encoding_format != "jpeg" else encode_jpeg(arr)

    saved = feature_lib.TensorInfo.dtype, image_feature._ImageEncoder._encode_image
    feature_lib.TensorInfo.dtype = property(lambda self: self.np_dtype)
    image_feature._ImageEncoder._encode_image = encode_with_pil
    try:
        yield
    finally:
        feature_lib.TensorInfo.dtype, image_feature._ImageEncoder._encode_image = saved


def write_rlds_dataset(data_dir: str | Path, name: str, version: str, features, splits: dict[str, list[dict]],
                       shards_per_split: int = 1, template: str = TEMPLATE_OF) -> Path:
    """``features``: a tfds FeaturesDict with ``steps`` (Dataset) and optional ``episode_metadata``;
    ``splits``: split name → list of episodes in TFDS nested form ``{"steps": [...], ...}``."""
    from tensorflow_datasets.core import example_serializer

    root = Path(data_dir) / name / version
    root.mkdir(parents=True, exist_ok=True)
    features.save_config(str(root))
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    split_infos = []
    for split, episodes in splits.items():
        bounds = np.linspace(0, len(episodes), shards_per_split + 1).astype(int)
        lengths, nbytes = [], 0
        for i in range(shards_per_split):
            chunk = episodes[bounds[i]:bounds[i + 1]]
            with open(root / shard_name(name, split, i, shards_per_split, template), "wb") as f, \
                    _without_tensorflow():
                for ep in chunk:
                    payload = serializer.serialize_example(features.encode_example(ep))
                    f.write(frame(payload))
                    nbytes += len(payload)
            lengths.append(str(len(chunk)))
        split_infos.append({"name": split, "filepathTemplate": template, "numBytes": str(nbytes),
                            "shardLengths": lengths})
    info = {"name": name, "version": version, "fileFormat": "tfrecord",
            "moduleName": "vlaflow.converters.openx_rlds.synth", "splits": split_infos}
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return root


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def sample_frame(rng: np.random.Generator, t: int, size: int = 64) -> np.ndarray:
    """A textured frame with a square that moves with time: compresses like a real camera."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([xx * 3, yy * 3, (xx + yy) * 2], axis=-1).astype(np.float64)
    img += rng.normal(0, 8, img.shape)
    sq = max(size // 8, 2)
    c = (t * 3) % (size - sq)
    img[c:c + sq, c:c + sq] = [220, 40, 40]
    return np.clip(img, 0, 255).astype(np.uint8)


BRIDGE_LIKE_INSTRUCTIONS = ("put carrot on plate", "flip pot upright which is in sink",
                            "turn lever vertical to front", "put cup from counter or drying rack into sink")


def bridge_like_features():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import features as F

    obs = {f"image_{k}": F.Image(shape=(64, 64, 3), dtype=np.uint8, encoding_format="jpeg") for k in range(4)}
    obs["state"] = F.Tensor(shape=(7,), dtype=np.float32)
    return F.FeaturesDict({
        "steps": tfds.features.Dataset({
            "action": F.Tensor(shape=(7,), dtype=np.float32),
            "observation": F.FeaturesDict(obs),
            "language_instruction": F.Text(),
            "reward": F.Scalar(dtype=np.float32), "discount": F.Scalar(dtype=np.float32),
            "is_first": F.Scalar(dtype=np.bool_), "is_last": F.Scalar(dtype=np.bool_),
            "is_terminal": F.Scalar(dtype=np.bool_),
        }),
        "episode_metadata": F.FeaturesDict({"file_path": F.Text(), "episode_id": F.Scalar(dtype=np.int32)}),
    })


def bridge_like_episode(rng: np.random.Generator, index: int, steps: int) -> dict:
    state = np.cumsum(rng.normal(0, 0.01, (steps, 7)), axis=0).astype(np.float32)
    state[:, 6] = (np.arange(steps) < steps // 2).astype(np.float32)  # gripper opens then closes
    action = np.zeros((steps, 7), np.float32)
    action[:-1, :6] = state[1:, :6] - state[:-1, :6]
    action[:, 6] = state[:, 6]
    instr = BRIDGE_LIKE_INSTRUCTIONS[index % len(BRIDGE_LIKE_INSTRUCTIONS)]
    frames = [encode_jpeg(sample_frame(rng, t + index)) for t in range(steps)]
    return {
        "steps": [{
            "action": action[t],
            "observation": {**{f"image_{k}": frames[t] for k in range(4)}, "state": state[t]},
            "language_instruction": instr, "reward": float(t == steps - 1), "discount": 1.0,
            "is_first": t == 0, "is_last": t == steps - 1, "is_terminal": t == steps - 1,
        } for t in range(steps)],
        "episode_metadata": {"file_path": f"synthetic/episode_{index:05d}", "episode_id": index},
    }


def write_sample_dataset(data_dir: str | Path, episodes: int = 40, steps: int = 12, shards: int = 2,
                         seed: int = 0) -> Path:
    """A synthetic dataset in Bridge's layout (name ``bridge_dataset``), so the built-in spec applies."""
    rng = np.random.default_rng(seed)
    splits = {split: [bridge_like_episode(rng, i + off, steps) for i in range(episodes)]
              for split, off in (("train", 0), ("val", 100_000))}
    return write_rlds_dataset(data_dir, "bridge_dataset", "1.0.0", bridge_like_features(), splits, shards)
