"""tf.data anchor of ``train_feed.py``: the Octo / OpenVLA (dlimp) training pipeline on the RLDS directory the
corpus was ingested from. Run in the TensorFlow environment (benchmarks/README.md), never imports vlaflow:

    /work/bench-envs/tf/bin/python benchmarks/feed_anchors/tf_data.py RLDS_DIR --horizon 8 --batch-size 32 ...

The steps follow ``octo/data/dataset.py`` (``make_dataset_from_rlds`` → ``apply_trajectory_transforms`` →
``flatten`` → shuffle → ``apply_frame_transforms`` → batch, as ``make_interleaved_dataset`` orders them):

1. ``tfds.builder_from_directory(dir).as_dataset(split, shuffle_files=True, decoders={"steps": SkipDecoding()})``:
   one element per episode, its steps as tensors, JPEGs still encoded (dlimp ``DLataset.from_rlds``);
2. restructure per trajectory (primary camera, proprio, language, action cast to float32) and normalize action and
   proprio with mean/std statistics (``normalize_action_and_proprio``, NORMAL; the statistics are computed once
   before timing, as Octo caches them) — ``repeat()``;
3. ``chunk_act_obs`` (window 1): the action chunk of H steps gathered with indices clipped to the episode's last
   step, and its pad mask (steps past the episode's end are padding);
4. flatten to frames (``interleave`` of ``from_tensor_slices``), ``shuffle(--shuffle-buffer)`` of frames whose
   images are still JPEG bytes;
5. decode + resize in a parallel map (``decode_and_resize``: ``tf.io.decode_image`` then dlimp's ``resize_image``:
   ``tf.image.resize`` lanczos3 with antialias, rounded to uint8), ``batch(B)``, RAM budget 1 GB, ``prefetch``,
   ``as_numpy_iterator`` (dlimp's ``iterator()``).

Left out, which makes this anchor cheaper than Octo: Bridge's ``standardize_fn`` (gripper binarization and action
relabelling: vlaflow did those at ingest), goal relabeling, image augmentation and language tokenization.
Prints one JSON line: samples/s over ``--batches`` batches after ``--warmup`` (pipeline start and the shuffle
buffer's fill are in the warm-up).
"""
import argparse
import json
import time

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

AUTOTUNE = tf.data.AUTOTUNE


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rlds_dir")
    ap.add_argument("--split", default="train+val")
    ap.add_argument("--camera", default="image_0", help="the primary camera's observation key")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--shuffle-buffer", type=int, default=10_000)
    a = ap.parse_args()
    builder = tfds.builder_from_directory(a.rlds_dir)

    def episodes(shuffle):
        return builder.as_dataset(split=a.split, shuffle_files=shuffle, decoders={"steps": tfds.decode.SkipDecoding()},
                                  read_config=tfds.ReadConfig(skip_prefetch=True, interleave_cycle_length=AUTOTUNE,
                                                              num_parallel_calls_for_interleave_files=AUTOTUNE))

    def restructure(ep):
        s = ep["steps"]
        return {"observation": {"image_primary": s["observation"][a.camera],
                                "proprio": tf.cast(s["observation"]["state"], tf.float32)},
                "task": {"language_instruction": s["language_instruction"]},
                "action": tf.cast(s["action"], tf.float32)}

    # Octo's get_dataset_statistics: one pass, cached; here untimed
    acts, props = [], []
    for t in episodes(False).map(restructure).as_numpy_iterator():
        acts.append(t["action"])
        props.append(t["observation"]["proprio"])
    acts, props = np.concatenate(acts), np.concatenate(props)
    stats = {k: (v.mean(0).astype(np.float32), v.std(0).astype(np.float32) + 1e-8) for k, v in
             (("action", acts), ("proprio", props))}

    def normalize(t):
        t["action"] = (t["action"] - stats["action"][0]) / stats["action"][1]
        t["observation"]["proprio"] = (t["observation"]["proprio"] - stats["proprio"][0]) / stats["proprio"][1]
        return t

    def chunk_act_obs(t):  # octo/data/traj_transforms.py, window_size=1
        n = tf.shape(t["action"])[0]
        t["observation"] = tf.nest.map_structure(lambda x: x[:, None], t["observation"])
        idx = tf.range(n)[:, None] + tf.range(a.horizon)
        t["action"] = tf.gather(t["action"], tf.minimum(idx, n - 1))[:, None]  # [T, 1, H, A]
        t["action_pad_mask"] = (idx <= n - 1)[:, None, :, None] & tf.ones_like(t["action"], tf.bool)
        return t

    def decode_and_resize(frame):  # octo/data/obs_transforms.py + dlimp resize_image, per frame
        def one(jpeg):
            img = tf.io.decode_image(jpeg, expand_animations=False, dtype=tf.uint8)
            img = tf.image.resize(img, (a.image_size, a.image_size), method="lanczos3", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

        frame["observation"]["image_primary"] = tf.map_fn(one, frame["observation"]["image_primary"],
                                                          fn_output_signature=tf.uint8)
        return frame

    ds = (episodes(True).map(restructure, num_parallel_calls=AUTOTUNE).map(normalize, num_parallel_calls=AUTOTUNE)
          .repeat().map(chunk_act_obs, num_parallel_calls=AUTOTUNE)
          .interleave(tf.data.Dataset.from_tensor_slices, cycle_length=AUTOTUNE, num_parallel_calls=AUTOTUNE)
          .shuffle(a.shuffle_buffer).map(decode_and_resize, num_parallel_calls=AUTOTUNE).batch(a.batch_size))
    opts = tf.data.Options()
    opts.autotune.enabled = True
    opts.autotune.ram_budget = 1  # GB: dlimp's with_ram_budget(1)
    it = ds.with_options(opts).prefetch(AUTOTUNE).as_numpy_iterator()
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        b = next(it)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for _ in range(a.batches):
        b = next(it)
        n += len(b["action"])
    dt = time.perf_counter() - t0
    img = b["observation"]["image_primary"]
    print(json.dumps({"samples_per_s": n / dt, "samples": n, "seconds": dt, "warmup_s": warm,
                      "image": [str(img.dtype), list(img.shape)], "action": list(b["action"].shape),
                      "tf": tf.__version__, "tfds": tfds.__version__}))


if __name__ == "__main__":
    main()
