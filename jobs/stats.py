"""``python jobs/stats.py --config configs/sample.yaml``: the stats stage (its ``stats:`` section) as a Ray job."""
from vlaflow.jobs.common import check_keys, main, need

KEYS = ["output", "split", "exclude", "k", "force", "num_cpus", "executor"]


def run(cfg: dict) -> int:
    from vlaflow.pipelines.stats import run_stats
    from vlaflow.tokenization.statistics.spec import StatsSpec

    check_keys(cfg, KEYS, "stats")
    excl: dict[str, list] = {"action": [], "state": []}
    for item in cfg.get("exclude", ["action:*.gripper"]) or []:
        kind, _, pattern = str(item).partition(":")
        if kind not in excl or not pattern:
            raise ValueError(f"stats.exclude: expected action:PATTERN or state:PATTERN, got {item!r}")
        excl[kind].append(pattern)
    spec = StatsSpec(exclude_action=tuple(excl["action"]), exclude_state=tuple(excl["state"]), k=cfg.get("k", 2048))
    splits = cfg.get("split")
    res = run_stats(str(need(cfg, "output", "stats")), spec, [splits] if isinstance(splits, str) else splits,
                    force=bool(cfg.get("force", False)), num_cpus=cfg.get("num_cpus"),
                    executor=cfg.get("executor", "ray"))
    print(f"stats: {len(res.stats['groups'])} group(s), {res.stats['rows']} rows → {res.path}")
    return 0


if __name__ == "__main__":
    main("stats", run)
