"""``vlaflow validate``: every invariant of a corpus root, checked from the files alone.

The root's shards, episodes table, ledger and quarantine, then each dataset's own files against the
catalog. Prompts are checked against the embodiment specs the ingest wrote into the output, so a custom
robot validates with no extra flags."""
from __future__ import annotations

import json
import posixpath
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlaflow.schemas import (SCHEMA_VERSION, Col, EpCol, UndecodableImage, VlaflowError, check_image_bytes,
                             read_schema_metadata, step_schema)
from vlaflow.schemas.columns import CAMERA_ROLES
from vlaflow.schemas.conventions import parse_fps
from vlaflow.schemas.embodiment import EmbodimentRegistry
from vlaflow.schemas.invariants import check_step_table, episode_starts
from vlaflow.schemas.names import is_safe_rel

from .corpus import Corpus
from .layout import DATA_DIR, DATASETS_DIR, EPISODES, LEDGER, QUARANTINE, RAW_DIR, VIDEO_DIR
from .metadata import DatasetManifest, Ledger
from .storage import Output

_COLUMNS = [Col.DATASET, Col.EPISODE_ID, Col.STEP_INDEX, Col.TIMESTAMP_NS, Col.TASK_FAMILY, Col.EMBODIMENT,
            Col.EMBODIMENT_PROMPT, Col.IS_FIRST, Col.IS_LAST, Col.IS_TERMINAL, Col.ACTION, Col.ACTION_MASK,
            Col.ACTION_VALID, Col.STATE, Col.STATE_MASK, Col.TRAJECTORY, Col.TRAJECTORY_MASK, Col.VIDEOS]


def _check_videos(table: pa.Table, name: str, videos: dict[str, int]) -> list[str]:
    """Every frame reference points into an MP4 of this shard, within its frames."""
    problems = []
    refs = table[Col.VIDEOS].combine_chunks()
    for role in CAMERA_ROLES:
        r = refs.field(role)
        if r.null_count == len(r):
            continue
        r = r.filter(r.is_valid())
        idx = r.field("frame_index").to_numpy(zero_copy_only=False)
        for path, frames in zip(*(pa.table({"p": r.field("path"), "i": idx}).group_by("p").aggregate(
                [("i", "max")])[c].to_pylist() for c in ("p", "i_max"))):
            if path not in videos:
                problems.append(f"{name}: videos.{role} points at {path}, not a video of this shard")
            elif frames >= videos[path]:
                problems.append(f"{name}: videos.{role} frame {frames} past the {videos[path]} frames of {path}")
        if idx.min() < 0:
            problems.append(f"{name}: videos.{role} has a negative frame index")
    return problems


def _check_shard(table: pa.Table, name: str, expected_prompts: dict, known_embodiments,
                 row_group_rows: list[int], videos: dict[str, int] | None = None) -> tuple[list[str], Counter, dict]:
    """→ problems, steps per episode, row group of each episode."""
    problems = []
    episode_rg: dict = {}
    ids = table[Col.EPISODE_ID].to_numpy(zero_copy_only=False)
    n = len(ids)
    lengths: Counter = Counter()
    if n == 0:
        return [f"{name}: empty shard"], lengths, episode_rg
    change = episode_starts(ids)
    starts = np.nonzero(change)[0]
    run_ids = ids[starts]
    run_len = np.diff(np.r_[starts, n])
    for eid, ln in zip(run_ids, run_len):
        lengths[eid] += int(ln)
    rg_of_row = np.repeat(np.arange(len(row_group_rows)), row_group_rows)
    if len(rg_of_row) == n:
        first_rg, last_rg = rg_of_row[starts], rg_of_row[starts + run_len - 1]
        if np.any(first_rg != last_rg):
            problems.append(f"{name}: an episode is split across row groups")
        episode_rg = dict(zip(run_ids.tolist(), first_rg.tolist()))
    problems += [f"{name}: {p.message}" for p in check_step_table(table)]
    pairs = pa.table({"d": table[Col.DATASET].cast(pa.string()), "e": table[Col.EMBODIMENT].cast(pa.string()),
                      "p": table[Col.EMBODIMENT_PROMPT].cast(pa.string())}).group_by(["d", "e", "p"]).aggregate([])
    for d, e, p in zip(*(pairs[c].to_pylist() for c in ("d", "e", "p"))):
        want = expected_prompts.get((d, e))
        if e not in known_embodiments:
            problems.append(f"{name}: embodiment {e!r} is neither built in nor among the specs in the output's meta/")
        elif want is not None and want != p:
            problems.append(f"{name}: embodiment_prompt of {d}/{e} differs from the registry's rendering")
    problems += _check_videos(table, name, videos or {})
    return problems, lengths, episode_rg


def _check_video(out: Output, v: dict) -> list[str]:
    """``--images`` for a shard MP4: it demuxes to the manifest's frame count and its first and last frames
    decode (a full decode would cost as much as reading the corpus)."""
    from vlaflow.media import PyAVDecoder, UndecodableVideo, probe

    try:
        with out.fs.open_input_file(out.path(v["path"])) as f:
            index = probe(f)
            if index.num_frames != v["frames"]:
                return [f"{v['path']}: {index.num_frames} frames, manifest says {v['frames']}"]
            dec = PyAVDecoder(f, index)
            try:
                got = [i for i, _ in dec.frames(sorted({0, index.num_frames - 1}))]
            finally:
                dec.close()
            return [] if got else [f"{v['path']}: no frame decodes"]
    except UndecodableVideo as err:
        return [f"{v['path']}: {err}"]


def _check_images(pf: pq.ParquetFile, name: str) -> list[str]:
    problems = []
    for rg in range(pf.num_row_groups):
        imgs = pf.read_row_group(rg, columns=[Col.IMAGES])[Col.IMAGES].combine_chunks()
        for role in CAMERA_ROLES:
            for i, v in enumerate(imgs.field(role).field("bytes").to_pylist()):
                if v is None:
                    continue
                try:
                    check_image_bytes(v, f"{name} row group {rg} images.{role}[{i}]")
                except UndecodableImage as err:
                    problems.append(str(err))
    return problems


def _check_raw(out: Output, raw: dict, table: pa.Table, pf: pq.ParquetFile) -> list[str]:
    """The raw side table: present, as written, and row for row the shard's steps in the shard's row groups."""
    rel = raw["path"]
    if not out.exists(rel):
        return [f"{rel}: listed in the manifest but missing"]
    if out.size(rel) != raw["bytes"] or out.sha256(rel) != raw["sha256"]:
        return [f"{rel}: size or sha256 differs from the manifest (corrupted or rewritten)"]
    with out.fs.open_input_file(out.path(rel)) as f:
        rf = pq.ParquetFile(f)
        keys = rf.read(columns=[Col.EPISODE_ID, Col.STEP_INDEX])
        groups = [rf.metadata.row_group(i).num_rows for i in range(rf.num_row_groups)]
    if groups != [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]:
        return [f"{rel}: row groups {groups[:5]} do not match the shard's"]
    if not (keys[Col.EPISODE_ID].equals(table[Col.EPISODE_ID]) and keys[Col.STEP_INDEX].equals(table[Col.STEP_INDEX])):
        return [f"{rel}: rows are not the shard's steps in the shard's order"]
    return []


def _check_datasets(out: Output, corpus: Corpus, lengths: Counter) -> list[str]:
    """Each dataset's own files against the catalog, and the root's files as their union."""
    problems: list[str] = []
    root = corpus.roots[0].manifest
    total = Ledger()
    shard_paths = {s["path"] for s in root.shards}
    all_ids: set[str] = set()
    quarantined = 0
    for name, entry in sorted(root.ingest_entries().items()):
        rel = entry.manifest
        if not is_safe_rel(rel) or not out.exists(rel):
            problems.append(f"dataset {name}: manifest {str(rel)[:100]!r} missing")
            continue
        if out.sha256(rel) != entry.manifest_sha256:
            problems.append(f"{rel}: sha256 differs from the catalog (rewritten after the catalog was built)")
        m = DatasetManifest.from_json(out.read_json(rel), rel)
        missing = [f for f in (m.ledger, m.episodes_table, m.quarantine) if not out.exists(f)]
        if missing:
            problems.append(f"dataset {name}: {', '.join(missing)} missing")
            continue
        led = Ledger.from_json(out.read_json(m.ledger), m.ledger)
        total.add(led)
        if led.episodes_in != led.episodes_out + led.episodes_quarantined:
            problems.append(f"{m.ledger}: does not balance ({led.episodes_in} in != {led.episodes_out} out + "
                            f"{led.episodes_quarantined} quarantined)")
        lines = len(out.read_bytes(m.quarantine).splitlines())
        quarantined += lines
        if lines != led.episodes_quarantined:
            problems.append(f"{m.quarantine}: {lines} entries, its ledger says {led.episodes_quarantined}")
        mine = [s["path"] for s in m.shards]
        if not set(mine) <= shard_paths:
            problems.append(f"dataset {name}: shards missing from the root manifest, e.g. {sorted(set(mine) - shard_paths)[0]}")
        ids = _episode_ids(out, m.episodes_table)
        all_ids |= ids
        held = sum(n for e, n in lengths.items() if e in ids)
        if led.steps_out != held:
            problems.append(f"{m.ledger}: {led.steps_out} steps out, its shards hold {held}")
    if out.exists(LEDGER):
        rl = out.read_json(LEDGER)
        if {k: rl.get(k) for k in ("episodes_in", "episodes_out", "steps_in", "steps_out")} != \
                {k: getattr(total, k) for k in ("episodes_in", "episodes_out", "steps_in", "steps_out")}:
            problems.append(f"{LEDGER}: not the sum of the datasets' ledgers")
    if _episode_ids(out, EPISODES) != all_ids:
        problems.append(f"{EPISODES}: not the union of the datasets' episodes tables")
    if out.exists(QUARANTINE) and len(out.read_bytes(QUARANTINE).splitlines()) != quarantined:
        problems.append(f"{QUARANTINE}: not the union of the datasets' quarantine files")
    known = {posixpath.dirname(e.manifest) for e in root.ingest_entries().values()}
    stray = sorted({posixpath.join(DATASETS_DIR, f.split("/")[2]) for f in out.list_files(DATASETS_DIR)
                    if f.count("/") >= 3} - known)
    if stray:
        problems.append(f"folders under {DATASETS_DIR}/ that the catalog does not list: {stray[:5]} "
                        "(an unfinished ingest, or files from elsewhere)")
    return problems


def _episode_ids(out: Output, rel: str) -> set[str]:
    if not out.exists(rel):
        return set()
    return set(pq.read_table(out.path(rel), columns=[EpCol.EPISODE_ID], filesystem=out.fs)
               [EpCol.EPISODE_ID].to_pylist())


def validate_output(path: str, check_images: bool = False) -> tuple[list[str], dict]:
    """A corpus root, or every root a corpus YAML lists (each in full; problems prefixed with its root)."""
    corpus = Corpus.open(path)
    if len(corpus.roots) == 1 and corpus.roots[0].uri == path:
        return _validate_root(corpus, check_images)
    problems, totals = [], Counter()
    for r in corpus.roots:
        p, stats = _validate_root(Corpus.open(r.uri), check_images)
        problems += [f"{r.uri}: {x}" for x in p]
        totals.update(stats)
    return problems, dict(totals)


def _validate_root(corpus: Corpus, check_images: bool) -> tuple[list[str], dict]:
    out = corpus.roots[0].out
    manifest = corpus.roots[0].manifest.to_json()
    problems: list[str] = []
    if manifest.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"manifest schema_version {manifest.get('schema_version')} != {SCHEMA_VERSION}")
    datasets = manifest.get("datasets", {})
    expected = step_schema(datasets)
    try:
        embodiments = corpus.embodiments()
    except VlaflowError as err:  # a spec file the catalog lists is missing or broken: report it, check the rest
        problems.append(str(err))
        embodiments = EmbodimentRegistry.builtin()
    prompts = {}
    for dname, info in datasets.items():
        if info["embodiment"] in embodiments:
            prompts[(dname, info["embodiment"])] = embodiments.get(info["embodiment"]).prompt(
                rate_hz=float(parse_fps(info["fps"])))
    lengths: Counter = Counter()
    episode_rg: dict = {}
    listed = set()
    for sh in manifest["shards"]:
        rel = sh["path"]
        raw = sh.get("raw")
        unsafe = [x for x in [rel] + [v["path"] for v in sh.get("videos", [])] + ([raw["path"]] if raw else [])
                  if not is_safe_rel(x)]
        if unsafe:
            problems.append(f"manifest path {str(unsafe[0])[:100]!r} leaves the output folder")
            continue
        listed.add(rel)
        shard_videos = {}
        for v in sh.get("videos", []):
            listed.add(v["path"])
            if not out.exists(v["path"]):
                problems.append(f"{v['path']}: listed in the manifest but missing")
            elif out.size(v["path"]) != v["bytes"] or out.sha256(v["path"]) != v["sha256"]:
                problems.append(f"{v['path']}: size or sha256 differs from the manifest (corrupted or rewritten)")
            else:
                shard_videos[v["path"]] = v["frames"]
                if check_images:
                    problems += _check_video(out, v)
        if not out.exists(rel):
            problems.append(f"{rel}: listed in the manifest but missing")
            continue
        if out.size(rel) != sh["bytes"]:
            problems.append(f"{rel}: {out.size(rel)} bytes, manifest says {sh['bytes']}")
        if out.sha256(rel) != sh["sha256"]:
            problems.append(f"{rel}: sha256 mismatch (corrupted or rewritten)")
            continue
        with out.fs.open_input_file(out.path(rel)) as f:
            pf = pq.ParquetFile(f)
            if not pf.schema_arrow.remove_metadata().equals(expected.remove_metadata()):
                problems.append(f"{rel}: schema differs from the unified schema {SCHEMA_VERSION}")
                continue
            try:
                meta = read_schema_metadata(pf.schema_arrow)
                if meta.get("schema_version") != SCHEMA_VERSION:
                    problems.append(f"{rel}: schema_version {meta.get('schema_version')}")
            except ValueError as err:
                problems.append(f"{rel}: {err}")
            if pf.metadata.num_rows != sh["rows"]:
                problems.append(f"{rel}: {pf.metadata.num_rows} rows, manifest says {sh['rows']}")
            if pf.num_row_groups != sh["row_groups"]:
                problems.append(f"{rel}: {pf.num_row_groups} row groups, manifest says {sh['row_groups']}")
            table = pf.read(columns=_COLUMNS)
            rg_rows = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
            p, ln, rg = _check_shard(table, rel, prompts, embodiments, rg_rows, shard_videos)
            episode_rg.update(rg)
            problems += p
            dup = set(ln) & set(lengths)
            if dup:
                problems.append(f"{rel}: episode ids also in another shard, e.g. {sorted(dup)[0]}")
            lengths.update(ln)
            if check_images:
                problems += _check_images(pf, rel)
            if raw:
                listed.add(raw["path"])
                problems += _check_raw(out, raw, table, pf)
    for folder in (DATA_DIR, VIDEO_DIR, RAW_DIR):
        stray = [f for f in out.list_files(folder) if f not in listed]
        if stray:
            problems.append(f"files under {folder}/ not in the manifest: {stray[:5]}")
    eps = pq.read_table(out.path(EPISODES), filesystem=out.fs) if out.exists(EPISODES) else None
    if eps is None:
        problems.append(f"{EPISODES} missing")
    else:
        ids = eps[EpCol.EPISODE_ID].to_pylist()
        if len(ids) != len(set(ids)):
            problems.append("episodes table: duplicate episode ids")
        if set(ids) != set(lengths):
            problems.append(f"episodes table lists {len(ids)} episodes, shards hold {len(lengths)}")
        for eid, ln, shard, rg in zip(ids, eps[EpCol.LENGTH].to_pylist(), eps[EpCol.SHARD_FILE].to_pylist(),
                                      eps[EpCol.ROW_GROUP].to_pylist()):
            if episode_rg.get(eid, rg) != rg:
                problems.append(f"episodes table: {eid} says row group {rg}, the shard has it in {episode_rg[eid]}")
                break
            if lengths.get(eid) not in (None, ln):
                problems.append(f"episodes table: {eid} length {ln}, shard has {lengths[eid]}")
                break
            if shard not in listed:
                problems.append(f"episodes table: {eid} points at {shard}, not a manifest shard")
                break
    if not out.exists(LEDGER):
        problems.append(f"{LEDGER} missing")
    else:
        led = out.read_json(LEDGER)
        if led["episodes_in"] != led["episodes_out"] + led["episodes_quarantined"]:
            problems.append(f"ledger does not balance: {led['episodes_in']} in != {led['episodes_out']} out + "
                            f"{led['episodes_quarantined']} quarantined")
        if led["episodes_out"] != len(lengths) or led["steps_out"] != sum(lengths.values()):
            problems.append(f"ledger says {led['episodes_out']} episodes / {led['steps_out']} steps out; "
                            f"shards hold {len(lengths)} / {sum(lengths.values())}")
        q = out.read_bytes(QUARANTINE).decode().splitlines() if out.exists(QUARANTINE) else []
        if len(q) != led["episodes_quarantined"]:
            problems.append(f"{QUARANTINE} has {len(q)} entries, ledger says {led['episodes_quarantined']}")
        for line in q:
            r = json.loads(line)
            if not r.get("code") or not r.get("reason"):
                problems.append(f"quarantine entry without code/reason: {line[:120]}")
                break
    if corpus.roots[0].manifest.manifest_version > 1:
        problems += _check_datasets(out, corpus, lengths)
    stats = {"shards": len(manifest["shards"]), "episodes": len(lengths), "rows": sum(lengths.values()),
             "datasets": len(datasets)}
    return problems, stats
