"""LeRobot anchor of ``train_feed.py``: ``DataLoader(LeRobotDataset)`` over the ``vlaflow export lerobot`` copy of the
corpus. Run in the LeRobot environment (benchmarks/README.md), never imports vlaflow:

    /work/bench-envs/lerobot/bin/python benchmarks/feed_anchors/lerobot_loader.py DIR --horizon 8 --batch-size 32 ...

What LeRobot's ``lerobot-train`` does with a dataset (``lerobot/scripts/lerobot_train.py``, policy aside):
``LeRobotDataset(repo_id, root=DIR, delta_timestamps={"action": [i / fps for i in range(H)]}, image_transforms=...)``
(one ``__getitem__`` per sample: the row, its action chunk of H steps through ``delta_timestamps`` with the pad mask
past the episode's end, the camera frame decoded — MP4 at the row's timestamp with LeRobot's default backend, or
the image bytes stored in the parquet — and the transform, here ``torchvision.transforms.v2.Resize`` to
``--image-size``), in ``torch.utils.data.DataLoader(batch_size=B, shuffle=True, num_workers=W, drop_last=True)``
cycled epoch after epoch the way its training loop cycles it (workers restart each epoch: not persistent).

Cameras: LeRobot decodes every camera a dataset has (four here); ``--camera`` keeps one — dropped from the
metadata's features (videos) or from the parquet's columns (images) — so it decodes the same one frame per sample
as the tf.data anchor and the vlaflow feed in encoder mode. That is less work than LeRobot does out of the box.
Normalization is not in this loop: LeRobot normalizes in the policy's pre-processor, on the batch.
Prints one JSON line: samples/s over ``--batches`` batches after ``--warmup``.
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing file must fail here, not start a download
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def cycle(loader):
    """``lerobot.utils.utils``-style: a new iterator (new worker processes) each epoch."""
    while True:
        yield from loader


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--camera", default="observation.images.primary")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    a = ap.parse_args()

    import lerobot
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.utils import hf_transform_to_torch
    from torchvision.transforms import v2

    fps = json.load(open(os.path.join(a.root, "meta/info.json")))["fps"]
    ds = LeRobotDataset("vlaflow/feed-bench", root=a.root, delta_timestamps={"action": [i / fps for i in range(a.horizon)]},
                        image_transforms=v2.Resize((a.image_size, a.image_size)))
    others = [k for k in ds.meta.camera_keys if k != a.camera]
    stored = [k for k in others if k in ds.hf_dataset.column_names]  # images mode: the frames are parquet columns
    if stored:
        ds.hf_dataset = ds.hf_dataset.remove_columns(stored)
        ds.hf_dataset.set_transform(hf_transform_to_torch)
    for k in others:
        del ds.meta.info["features"][k]
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                         drop_last=True)
    it = cycle(loader)
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
    print(json.dumps({"samples_per_s": n / dt, "samples": n, "seconds": dt, "warmup_s": warm,
                      "image": [str(b[a.camera].dtype), list(b[a.camera].shape)], "action": list(b["action"].shape),
                      "cameras_decoded": [k for k in b if k in ds.meta.camera_keys], "frames": len(ds),
                      "video_backend": ds.video_backend if ds.meta.video_keys else None,
                      "lerobot": lerobot.__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
