"""``python jobs/train.py --config configs/sample.yaml [KEY=VALUE ...]``: the VLA training job (its ``train:``
section) on Ray Train; run it with ``ray job submit --working-dir . -- python jobs/train.py --config ...``. The same
(output, name) resumes from the run's latest checkpoint."""
import json

from vlaflow.jobs.common import main


def run(cfg: dict) -> int:
    from vlaflow.pipelines.train import run_training, train_config_from_dict

    res = run_training(train_config_from_dict(cfg))
    keep = ("step", "samples_consumed", "first_loss", "loss", "samples_per_s", "data_wait_fraction")
    print("train: " + json.dumps({**{k: res.metrics.get(k) for k in keep},
                                  **{k: v for k, v in res.metrics.items() if k.startswith("loss/")},
                                  "resumed_from": res.resumed_from, "checkpoint": res.checkpoint}, sort_keys=True))
    return 0


if __name__ == "__main__":
    main("train", run)
