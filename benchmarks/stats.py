#!/usr/bin/env python
"""Statistics and action-token benchmark: `vlaflow stats` versus LeRobot-style per-episode
histograms merged afterwards, on the same data; then bins vs FAST on the real Bridge fixture.

1. Ingests the Bridge fixture (shared/fixtures/rlds/octo_bridge_debug, 50 episodes / 500 steps) with
   `vlaflow ingest`, then builds a scaled output folder from its shards: `--steps` rows (default
   1,000,000) in `--shards` Parquet shards in the unified schema, the fixture's rows repeated with a
   little Gaussian jitter on the real action/state values (so no two copies are equal) and regrouped
   into episodes of `--episode-steps` steps (default 40). The cameras column is kept but null, to keep
   the copy small (the stats pass never reads it either way). A manifest with sha256s is written.
2. Runs on that folder:
   (a) `vlaflow stats` (pipelines/stats.py: Ray Data, one partial per block, merged on the driver):
       cold (including `ray.init`) and warm (Ray already up, `force=True`), plus the in-process pass;
   (b) the LeRobot approach (anchors.md §2): per episode, `compute_episode_stats` — min/max/mean,
       std from E[x²] − E[x]², quantiles from a 5000-bin histogram per dimension, looping over
       dimensions in Python — then merging the episodes' statistics: `aggregate_stats` of LeRobot 0.4.4
       (count-weighted mean of quantiles) and the envelope merge of LeRobot ≥ #3804 (q01/q10/q50 =
       min over episodes, q90/q99 = max). LeRobot's own `compute_stats.py` is loaded from
       `--lerobot-compute-stats` (default: the benchmark LeRobot venv's copy) when it exists, with
       its one image helper stubbed; otherwise a faithful port below is used (the report says which).
       It is given the same values: per (dataset, embodiment) group, the masked-in dimensions of
       `action` (valid steps) and `state`, read from the same Parquet columns.
   Both are compared with exact NumPy (`numpy.quantile`, `std`) over the same values: normalized
   rank error of q01…q99 (distance of q·n from the estimate's rank interval, over n) and std error.
3. Action tokens on the real fixture output (not the scaled copy): actions q01/q99-normalized with
   its stats.json, chunks of `--horizon` valid steps inside episodes, FAST's BPE fitted on the train
   split and measured on the val split; tokens per chunk for uniform bins (256) vs FAST, and the
   round-trip error (max / RMS) in normalized units and in action units (m, rad).

    .venv/bin/python benchmarks/stats.py                    # 1M steps
    .venv/bin/python benchmarks/stats.py --steps 200000 --json out.json
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_FIXTURE = Path("/work/shared/fixtures/rlds/octo_bridge_debug/bridge_dataset/1.0.0")
DEFAULT_LEROBOT_STATS = next(iter(sorted(glob.glob(
    "/work/bench-envs/lerobot/lib/python3*/site-packages/lerobot/datasets/compute_stats.py"))), None)
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QKEYS = ("q01", "q10", "q50", "q90", "q99")
COLS = ["dataset", "embodiment", "episode_id", "is_first", "action", "action_mask", "action_valid", "state",
        "state_mask"]


# ------------------------------------------------------------------------------------- the data
def ingest_fixture(fixture: Path, out: Path) -> Path:
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    if not (out / "meta/manifest.json").exists():
        run_ingest(IngestConfig("openx_rlds", str(fixture), str(out), num_cpus=2))
    return out


def build_scaled(src: Path, dst: Path, steps: int, shards: int, episode_steps: int, seed: int = 0) -> dict:
    """The fixture's rows repeated to ``steps`` rows with jitter, episodes of ``episode_steps``."""
    from vlaflow.schemas import ACTION, STATE

    manifest = json.loads((src / "meta/manifest.json").read_text())
    files = [src / s["path"] for s in manifest["shards"]]
    base = pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()
    schema = base.schema
    rng = np.random.default_rng(seed)
    act = base["action"].combine_chunks().flatten().to_numpy().reshape(-1, ACTION.width)
    amask = base["action_mask"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, ACTION.width)
    st = base["state"].combine_chunks().flatten().to_numpy().reshape(-1, STATE.width)
    smask = base["state_mask"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, STATE.width)
    a_sd = np.where(amask.any(0), act.std(0), 0) * 0.1
    s_sd = np.where(smask.any(0), st.std(0), 0) * 0.1
    n0 = base.num_rows
    per_shard = -(-steps // shards // episode_steps) * episode_steps  # episodes never straddle shards
    out_shards = []
    row = 0
    for k in range(shards):
        n = min(per_shard, steps - row)
        if n <= 0:
            break
        idx = np.arange(row, row + n) % n0
        t = base.take(pa.array(idx))
        a = act[idx] + np.where(amask[idx], rng.normal(size=(n, ACTION.width)) * a_sd, 0)
        s = st[idx] + np.where(smask[idx], rng.normal(size=(n, STATE.width)) * s_sd, 0)
        g = (np.arange(row, row + n)) // episode_steps
        pos = np.arange(row, row + n) % episode_steps
        ep = pa.array([f"bridge_dataset/bench/{e:08d}" for e in g], pa.string())
        fixed = lambda v, w: pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).ravel()), w)  # noqa: E731
        cols = {"episode_id": ep, "step_index": pa.array(pos.astype(np.int32)),
                "is_first": pa.array(pos == 0), "is_last": pa.array(pos == episode_steps - 1),
                "action_valid": pa.array(pos != episode_steps - 1),  # the last step's action undefined, as in RLDS
                "action": fixed(a, ACTION.width), "state": fixed(s, STATE.width),
                "images": pa.nulls(n, schema.field("images").type)}
        for name, arr in cols.items():
            t = t.set_column(schema.get_field_index(name), schema.field(name), arr)
        rel = f"data/bridge_dataset/bench/chunk-000/shard-{k:05d}.parquet"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t.cast(schema), dst / rel, compression="zstd", row_group_size=32768)
        data = (dst / rel).read_bytes()
        out_shards.append({"path": rel, "dataset": "bridge_dataset", "split": "bench", "rows": n,
                           "row_groups": pq.ParquetFile(dst / rel).num_row_groups,
                           "episodes": int((pos == 0).sum()), "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()})
        row += n
    m = {k: v for k, v in manifest.items() if k not in ("shards", "totals")}
    m["shards"] = out_shards
    m["totals"] = {"shards": len(out_shards), "rows": row, "episodes": -(-row // episode_steps),
                   "bytes": sum(s["bytes"] for s in out_shards)}
    (dst / "meta").mkdir(parents=True, exist_ok=True)
    (dst / "meta/manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True))
    return m


def iter_shards(out: Path):
    """The columns both approaches use, as NumPy, one shard at a time."""
    from vlaflow.schemas import ACTION, STATE
    from vlaflow.schemas.arrow import strings_to_numpy

    for f in sorted(glob.glob(str(out / "data/**/*.parquet"), recursive=True)):
        t = pq.read_table(f, columns=COLS)

        def fx(c, w, t=t):
            return np.concatenate([ch.flatten().to_numpy(zero_copy_only=False) for ch in t[c].chunks]).reshape(-1, w)

        yield {"action": fx("action", ACTION.width), "action_mask": fx("action_mask", ACTION.width),
               "state": fx("state", STATE.width), "state_mask": fx("state_mask", STATE.width),
               "action_valid": t["action_valid"].to_numpy(),
               "episode_id": t["episode_id"].to_numpy(zero_copy_only=False),
               "dataset": strings_to_numpy(t["dataset"]), "embodiment": strings_to_numpy(t["embodiment"])}


def read_columns(out: Path, dims: dict | None = None):
    """All shards concatenated; with ``dims`` = {"action": [...], "state": [...]} only those positions."""
    parts = []
    for p in iter_shards(out):
        if dims is not None:
            p["action"], p["state"] = p["action"][:, dims["action"]], p["state"][:, dims["state"]]
            p["action_mask"], p["state_mask"] = p["action_mask"][:, dims["action"]], p["state_mask"][:, dims["state"]]
        parts.append(p)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def stats_dims(stats: dict, layout: str) -> list[tuple[str, int]]:
    """(slot, global position) of every value the stats pass has statistics for, in one group."""
    g = next(iter(stats["groups"].values()))
    return [(slot, st["start"] + i) for slot, st in g[layout].items() for i in range(st["width"]) if st["count"][i]]


# --------------------------------------------------------------------------- LeRobot's approach
class _PortedRunningQuantileStats:
    """Port of lerobot.datasets.compute_stats.RunningQuantileStats (0.4.4) for a single batch."""

    def __init__(self, bins=5000):
        self.bins = bins

    def stats(self, x: np.ndarray) -> dict:
        n = len(x)
        mean, mean_sq = x.mean(0), (x ** 2).mean(0)
        lo, hi = x.min(0), x.max(0)
        out = {"min": lo, "max": hi, "mean": mean, "std": np.sqrt(np.maximum(0, mean_sq - mean ** 2)),
               "count": np.array([n])}
        qs = {k: [] for k in QKEYS}
        for i in range(x.shape[1]):  # LeRobot loops over dimensions in Python
            edges = np.linspace(lo[i] - 1e-10, hi[i] + 1e-10, self.bins + 1)
            hist, _ = np.histogram(x[:, i], bins=edges)
            cum = np.cumsum(hist)
            for k, q in zip(QKEYS, QUANTILES):
                target = q * n
                j = np.searchsorted(cum, target)
                if j == 0:
                    v = edges[0]
                elif j >= len(cum):
                    v = edges[-1]
                else:
                    before = cum[j - 1]
                    inbin = cum[j] - before
                    v = edges[j] if inbin == 0 else edges[j] + (target - before) / inbin * (edges[j + 1] - edges[j])
                qs[k].append(v)
        out.update({k: np.array(v) for k, v in qs.items()})
        return out


def load_lerobot(path: str | None):
    """LeRobot's own compute_stats.py (its image helper stubbed), or None."""
    if not path or not Path(path).exists():
        return None
    for name in ("lerobot", "lerobot.datasets"):
        sys.modules.setdefault(name, types.ModuleType(name))
    utils = types.ModuleType("lerobot.datasets.utils")
    utils.load_image_as_numpy = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no images here"))
    sys.modules["lerobot.datasets.utils"] = utils
    spec = importlib.util.spec_from_file_location("lerobot_compute_stats", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def envelope_merge(eps: list[dict], weighted: dict) -> dict:
    """LeRobot ≥ #3804: mean/std/min/max as aggregate_stats; q01/q10/q50 = min, q90/q99 = max."""
    out = dict(weighted)
    for k in QKEYS:
        arr = np.stack([e[k] for e in eps])
        out[k] = arr.min(0) if k in ("q01", "q10", "q50") else arr.max(0)
    return out


def lerobot_stats(out: Path, lerobot_mod) -> tuple[dict, float, float]:
    """Per-episode stats of the real action (valid steps) and state dims, then the merges.

    Reads shard by shard (the same columns the stats pass reads); returns (stats, total seconds,
    of which reading)."""
    t0 = time.perf_counter()
    read_s = 0.0
    port = _PortedRunningQuantileStats()
    per_ep, adims, sdims = [], None, None
    it = iter_shards(out)
    while True:
        t1 = time.perf_counter()
        cols = next(it, None)
        read_s += time.perf_counter() - t1
        if cols is None:
            break
        if adims is None:
            adims = np.flatnonzero(cols["action_mask"].any(0))
            sdims = np.flatnonzero(cols["state_mask"].any(0))
            feats = {"action": {"dtype": "float32", "shape": (len(adims),)},
                     "observation.state": {"dtype": "float32", "shape": (len(sdims),)}}
        ids = cols["episode_id"]
        change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        bounds = np.concatenate([[0], change, [len(ids)]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            valid = cols["action_valid"][a:b]
            ep = {"action": cols["action"][a:b][valid][:, adims], "observation.state": cols["state"][a:b][:, sdims]}
            if lerobot_mod is not None:
                per_ep.append(lerobot_mod.compute_episode_stats(ep, feats))
            else:
                per_ep.append({k: port.stats(v) for k, v in ep.items()})
    if lerobot_mod is not None:
        merged = lerobot_mod.aggregate_stats(per_ep)
    else:  # aggregate_stats of 0.4.4: count-weighted means (quantiles too), parallel variance
        merged = {}
        for key in ("action", "observation.state"):
            eps = [e[key] for e in per_ep]
            c = np.array([e["count"][0] for e in eps], np.float64)[:, None]
            mean = (np.stack([e["mean"] for e in eps]) * c).sum(0) / c.sum()
            var = ((np.stack([e["std"] for e in eps]) ** 2 + (np.stack([e["mean"] for e in eps]) - mean) ** 2)
                   * c).sum(0) / c.sum()
            merged[key] = {"mean": mean, "std": np.sqrt(var), "min": np.stack([e["min"] for e in eps]).min(0),
                           "max": np.stack([e["max"] for e in eps]).max(0), "count": np.array([c.sum()]),
                           **{k: (np.stack([e[k] for e in eps]) * c).sum(0) / c.sum() for k in QKEYS}}
    envelope = {key: envelope_merge([e[key] for e in per_ep], merged[key]) for key in merged}
    seconds = time.perf_counter() - t0
    return {"weighted": merged, "envelope": envelope, "adims": adims, "sdims": sdims,
            "episodes": len(per_ep)}, seconds, read_s


# ------------------------------------------------------------------------------------- accuracy
def rank_err(sorted_vals: np.ndarray, v: float, q: float) -> float:
    n = len(sorted_vals)
    lo, hi = np.searchsorted(sorted_vals, v, "left"), np.searchsorted(sorted_vals, v, "right")
    return float(max(lo - q * n, q * n - hi, 0) / n)


def accuracy(cols: dict, vlaflow_stats: dict, lr: dict) -> dict:
    """Max rank error over every (dim, quantile) with statistics, and max relative std error."""
    g = next(iter(vlaflow_stats["groups"].values()))
    res = {"vlaflow": [], "lerobot_weighted": [], "lerobot_envelope": []}
    std_err = {"vlaflow": [], "lerobot": []}
    for layout, key, dims in (("action", "action", lr["adims"]), ("state", "observation.state", lr["sdims"])):
        vals = cols[layout]  # only the positions in ``dims``, in that order
        rows = cols["action_valid"] if layout == "action" else np.ones(len(vals), bool)
        for slot, d in stats_dims(vlaflow_stats, layout):
            st = g[layout][slot]
            i = d - st["start"]
            x = vals[rows, int(np.flatnonzero(dims == d)[0])].astype(np.float64)
            xs = np.sort(x)
            j = int(np.flatnonzero(dims == d)[0])
            for q, k in zip(QUANTILES, QKEYS):
                res["vlaflow"].append(rank_err(xs, st[k][i], q))
                res["lerobot_weighted"].append(rank_err(xs, float(lr["weighted"][key][k][j]), q))
                res["lerobot_envelope"].append(rank_err(xs, float(lr["envelope"][key][k][j]), q))
            sd = x.std()
            std_err["vlaflow"].append(abs(st["std"][i] - sd) / sd)
            std_err["lerobot"].append(abs(float(lr["weighted"][key]["std"][j]) - sd) / sd)
    out = {f"max_rank_error_{k}": max(v) for k, v in res.items()}
    out.update({f"mean_rank_error_{k}": float(np.mean(v)) for k, v in res.items()})
    out.update({f"max_std_rel_error_{k}": max(v) for k, v in std_err.items()})
    out["values_checked"] = len(res["vlaflow"])
    return out


# ---------------------------------------------------------------------------------------- tokens
def token_report(out: Path, stats: dict, horizon: int, vocab: int, scale: float) -> dict:
    from vlaflow.schemas import ACTION
    from vlaflow.tokenization.normalization import Normalizer
    from vlaflow.tokenization.sampling.chunks import action_chunks
    from vlaflow.tokenization.tokenizers.bins import UniformBins
    from vlaflow.tokenization.tokenizers.fast import FASTTokenizer

    cols = read_columns(out)
    norm = Normalizer(stats, "quantile")
    ds, emb = cols["dataset"][0], cols["embodiment"][0]
    y = norm.normalize(cols["action"], ds, emb)
    split = np.array([e.split("/")[1] for e in cols["episode_id"]])
    chunks = {}
    for s in ("train", "val"):
        sel = split == s
        chunks[s], pos, _ = action_chunks(y[sel], cols["action_mask"][sel], cols["action_valid"][sel],
                                          cols["episode_id"][sel], horizon)
    fast = FASTTokenizer.fit(chunks["train"], vocab_size=vocab, scale=scale)
    bins = UniformBins(256)
    val = chunks["val"]
    aff = norm.affine(ds, emb)

    def to_units(c):  # normalized chunk values (active positions) → action units
        full = np.zeros((*c.shape[:-1], ACTION.width))
        full[..., pos] = c
        return (full * aff.scale + aff.center)[..., pos]

    f_tok, f_dec, invalid = [], [], 0
    for c in val:
        ids = fast.encode(c)
        d, ok = fast.decode_with_status(ids, horizon, len(pos))
        invalid += not ok
        f_tok.append(len(ids))
        f_dec.append(d)
    f_dec = np.stack(f_dec)
    b_dec = bins.decode(bins.encode(val))
    res = {"horizon": horizon, "action_dim": int(len(pos)), "val_chunks": int(len(val)),
           "train_chunks": int(len(chunks["train"])), "fast_vocab": fast.vocab_size, "fast_scale": scale,
           "bins_tokens_per_chunk": horizon * len(pos), "fast_tokens_per_chunk_mean": float(np.mean(f_tok)),
           "fast_tokens_per_chunk_max": int(np.max(f_tok)), "fast_invalid_decodes": invalid}
    for name, dec in (("bins", b_dec), ("fast", f_dec)):
        e = dec - val
        eu = to_units(dec) - to_units(val)
        res[f"{name}_err_norm_max"] = float(np.abs(e).max())
        res[f"{name}_err_norm_rms"] = float(np.sqrt((e ** 2).mean()))
        res[f"{name}_err_units_max"] = float(np.abs(eu).max())
        res[f"{name}_err_units_rms"] = float(np.sqrt((eu ** 2).mean()))
    # per slot, in its own unit (m, rad, gripper opening)
    names = [ACTION.value_names()[p].split("[")[0] for p in pos]
    res["per_slot_units"] = {}
    for slot in dict.fromkeys(names):
        cols_ = [i for i, n in enumerate(names) if n == slot]
        entry = {"unit": ACTION.slot(slot).unit}
        for name, dec in (("bins", b_dec), ("fast", f_dec)):
            e = (to_units(dec) - to_units(val))[..., cols_]
            entry[name] = [float(np.abs(e).max()), float(np.sqrt((e ** 2).mean()))]
        res["per_slot_units"][slot] = entry
    return res


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--episode-steps", type=int, default=40)
    ap.add_argument("--lerobot-compute-stats", default=DEFAULT_LEROBOT_STATS)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--fast-vocab", type=int, default=1024)
    ap.add_argument("--fast-scale", type=float, default=10.0)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the numbers as JSON ('-' = stdout)")
    args = ap.parse_args(argv)

    from vlaflow.pipelines.stats import run_stats

    work = args.workdir or Path(tempfile.mkdtemp(prefix="vlaflow-stats-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"steps": args.steps, "episode_steps": args.episode_steps, "shards": args.shards}
    try:
        fx = ingest_fixture(args.fixture, work / "fixture_out")
        scaled = work / "scaled"
        if scaled.exists():
            shutil.rmtree(scaled)
        t0 = time.perf_counter()
        build_scaled(fx, scaled, args.steps, args.shards, args.episode_steps)
        print(f"built {args.steps} steps in {args.shards} shards ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

        import ray

        if ray.is_initialized():
            ray.shutdown()
        cold = run_stats(str(scaled), force=True, num_cpus=args.num_cpus)
        warm = run_stats(str(scaled), force=True, num_cpus=args.num_cpus)
        t0 = time.perf_counter()
        again = run_stats(str(scaled))
        cached_s = time.perf_counter() - t0
        assert again.cached
        t0 = time.perf_counter()
        run_stats(str(scaled), force=True, executor="local")
        local_s = time.perf_counter() - t0
        ray.shutdown()

        mod = load_lerobot(args.lerobot_compute_stats)
        lr, lr_s, read_s = lerobot_stats(scaled, mod)
        cols = read_columns(scaled, {"action": lr["adims"], "state": lr["sdims"]})
        results.update({
            "vlaflow_stats_cold_s": cold.seconds, "vlaflow_stats_warm_s": warm.seconds,
            "vlaflow_stats_cached_s": cached_s, "vlaflow_local_s": local_s,
            "lerobot_impl": f"LeRobot's compute_stats.py ({args.lerobot_compute_stats})" if mod else "built-in port",
            "lerobot_read_s": read_s, "lerobot_compute_s": lr_s - read_s, "lerobot_total_s": lr_s,
            "episodes": int(cold.stats["groups"]["bridge_dataset/widowx_250"]["episodes"]),
        })
        results["speedup_warm"] = results["lerobot_total_s"] / warm.seconds
        results["speedup_cold"] = results["lerobot_total_s"] / cold.seconds
        results["speedup_local"] = results["lerobot_total_s"] / local_s
        results.update(accuracy(cols, warm.stats, lr))
        del cols

        stats_fx = run_stats(str(fx), num_cpus=args.num_cpus).stats
        import ray as _r

        _r.shutdown()
        results["tokens"] = token_report(fx, stats_fx, args.horizon, args.fast_vocab, args.fast_scale)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    r, tk = results, results["tokens"]
    lines = [
        f"stats over {r['steps']:,} steps, {r['episodes']:,} episodes of {r['episode_steps']} steps, "
        f"{r['shards']} shards",
        f"  vlaflow stats (Ray, warm)          {r['vlaflow_stats_warm_s']:8.2f} s",
        f"  vlaflow stats (Ray, cold: +init)   {r['vlaflow_stats_cold_s']:8.2f} s",
        f"  vlaflow stats (in-process)         {r['vlaflow_local_s']:8.2f} s",
        f"  vlaflow stats (second run, cached) {r['vlaflow_stats_cached_s']:8.3f} s",
        f"  LeRobot per-episode histograms     {r['lerobot_total_s']:8.2f} s  (read {r['lerobot_read_s']:.2f} + "
        f"compute {r['lerobot_compute_s']:.2f}; {r['lerobot_impl']})",
        f"  speed ratio LeRobot / vlaflow: warm {r['speedup_warm']:.1f}x, cold {r['speedup_cold']:.1f}x, "
        f"in-process {r['speedup_local']:.1f}x   (target ≥ 10x)",
        f"  quantile rank error vs exact ({r['values_checked']} dim×quantile): vlaflow max "
        f"{r['max_rank_error_vlaflow']:.5f}; LeRobot weighted-mean merge max "
        f"{r['max_rank_error_lerobot_weighted']:.4f} "
        f"(mean {r['mean_rank_error_lerobot_weighted']:.4f}); envelope merge max "
        f"{r['max_rank_error_lerobot_envelope']:.4f} (mean {r['mean_rank_error_lerobot_envelope']:.4f})",
        f"  std relative error: vlaflow {r['max_std_rel_error_vlaflow']:.2e}, "
        f"LeRobot {r['max_std_rel_error_lerobot']:.2e}",
        f"action tokens on the real fixture (chunks of {tk['horizon']} steps × {tk['action_dim']} dims; FAST fit on "
        f"{tk['train_chunks']} train chunks, measured on {tk['val_chunks']} val chunks)",
        f"  tokens per chunk: bins {tk['bins_tokens_per_chunk']}, FAST mean {tk['fast_tokens_per_chunk_mean']:.1f} "
        f"(max {tk['fast_tokens_per_chunk_max']}, vocab {tk['fast_vocab']}, "
        f"invalid decodes {tk['fast_invalid_decodes']})",
        f"  round trip, normalized units (max / RMS): bins {tk['bins_err_norm_max']:.4f} / "
        f"{tk['bins_err_norm_rms']:.4f}; "
        f"FAST {tk['fast_err_norm_max']:.4f} / {tk['fast_err_norm_rms']:.4f}",
    ]
    for slot, e in tk["per_slot_units"].items():
        lines.append(f"  round trip {slot} ({e['unit']}) max / RMS: bins {e['bins'][0]:.2e} / {e['bins'][1]:.2e}; "
                     f"FAST {e['fast'][0]:.2e} / {e['fast'][1]:.2e}")
    print("\n".join(lines))
    if args.json:
        text = json.dumps(results, indent=1, default=float)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
