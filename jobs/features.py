"""``python jobs/features.py --config configs/sample.yaml``: the features stage (its ``features:`` section) as a Ray
job."""
from vlaflow.jobs.common import check_keys, main, need

KEYS = ["output", "encoder", "tokens", "batch_size", "dtype", "executor", "num_gpus", "num_cpus", "key", "pool_size"]


def run(cfg: dict) -> int:
    from vlaflow.pipelines.features import run_features

    check_keys(cfg, KEYS, "features")
    res = run_features(str(need(cfg, "output", "features")), str(need(cfg, "encoder", "features")),
                       tokens=cfg.get("tokens", 0), batch_size=cfg.get("batch_size", 32),
                       dtype=cfg.get("dtype", "float16"), executor=cfg.get("executor", "ray"),
                       num_gpus=cfg.get("num_gpus", 0), num_cpus=cfg.get("num_cpus"), key=cfg.get("key"),
                       pool_size=cfg.get("pool_size"))
    print(f"features: {res.manifest['totals']['rows']} rows → {res.path}")
    return 0 if res.ledger["balanced"] else 1


if __name__ == "__main__":
    main("features", run)
