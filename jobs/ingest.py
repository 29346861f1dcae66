"""``python jobs/ingest.py --config configs/sample.yaml``: the ingest stage (its ``ingest:`` section) as a Ray job."""
from vlaflow.jobs.common import check_keys, main, need

KEYS = ["converter", "input", "output", "split", "spec", "embodiments", "opt", "target_shard_mb", "num_cpus",
        "verify_images", "executor"]


def run(cfg: dict) -> int:
    from vlaflow.converters import ConverterOptions
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.schemas import load_embodiment_files

    check_keys(cfg, KEYS, "ingest")
    opts = ConverterOptions(split=cfg.get("split"), spec_file=cfg.get("spec"),
                            extra={k: str(v) for k, v in (cfg.get("opt") or {}).items()},
                            embodiments=load_embodiment_files(cfg.get("embodiments") or []))
    res = run_ingest(IngestConfig(need(cfg, "converter", "ingest"), str(need(cfg, "input", "ingest")),
                                  str(need(cfg, "output", "ingest")), opts, cfg.get("target_shard_mb", 256),
                                  cfg.get("num_cpus"), bool(cfg.get("verify_images", False)),
                                  cfg.get("executor", "ray")))
    led = res.ledger
    print(f"ingest: {led['episodes_out']} episodes out, {led['episodes_quarantined']} quarantined, "
          f"{res.seconds:.1f} s")
    return 0 if led["balanced"] else 1


if __name__ == "__main__":
    main("ingest", run)
