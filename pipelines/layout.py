"""Where everything lives in an output folder, and the limits that shape it. One place only."""
from __future__ import annotations

import posixpath

from vlaflow.schemas.names import safe_component

DATA_DIR = "data"
VIDEO_DIR = "videos"  # MP4s of frames stored as video, mirroring data/ (one per shard and camera)
RAW_DIR = "raw"  # source features kept verbatim (schemas/raw.py), one file per shard, mirroring data/
META_DIR = "meta"
# The corpus: these four at the root cover every dataset ingested into it (union, datasets in name order).
MANIFEST = "meta/manifest.json"  # the catalog (pipelines/metadata.py CorpusManifest)
LEDGER = "meta/ledger.json"
QUARANTINE = "meta/quarantine.jsonl"
EPISODES = "meta/episodes.parquet"
# One ingest = one dataset: its own copies of the four, the specs it resolved, and its resume state.
DATASETS_DIR = "meta/datasets"
STATS = "meta/stats.json"
STATS_PARTIALS = "meta/stats"  # mergeable per-(dataset, embodiment) partials beside stats.json
LOCK = "meta/lock.json"  # the one writer of this root right now (pipelines/lock.py); absent when none
FEATURES_DIR = "features"  # features/<encoder-key>/: frozen-encoder features, shards aligned 1:1 with data/

FILES_PER_FOLDER = 1000  # Hub limit is 10k per folder; LeRobot uses 1000
DEFAULT_TARGET_SHARD_MB = 256  # shards are packed by source bytes to about this size
# A small input still gets several shards, so several workers share it: the target shrinks to
# total/PLAN_MIN_SHARDS, but not below MIN_SHARD_BYTES. This depends on the input only, never on
# the cluster, so the same input always gives the same shards.
PLAN_MIN_SHARDS = 16
MIN_SHARD_BYTES = 16 << 20
ZSTD_LEVEL = 3
# Row groups hold whole episodes and close once they pass this many Arrow bytes: one tiny row
# group per short episode costs 4x the write time and a bloated footer; the episodes table
# records each episode's row group, so random access still reads one row group.
ROW_GROUP_BYTES = 16 << 20
# Read tasks hand episodes to the writer in batches (one Arrow build per batch, not per episode).
BATCH_BYTES = 4 << 20
BATCH_EPISODES = 64

def shard_path(dataset: str, split: str, index: int) -> str:
    folder = index // FILES_PER_FOLDER
    return posixpath.join(DATA_DIR, safe_component(dataset), safe_component(split or "all"),
                          f"chunk-{folder:03d}", f"shard-{index:05d}.parquet")


def video_path(shard_rel: str, role: str, part: int = 0) -> str:
    """``data/<ds>/<split>/chunk-000/shard-00000.parquet`` → ``videos/<ds>/<split>/chunk-000/shard-00000.<role>.mp4``."""
    rel = posixpath.relpath(shard_rel, DATA_DIR).rsplit(".", 1)[0]
    suffix = f".{part}" if part else ""
    return posixpath.join(VIDEO_DIR, f"{rel}.{safe_component(role)}{suffix}.mp4")


def raw_path(shard_rel: str) -> str:
    """``data/<ds>/<split>/chunk-000/shard-00000.parquet`` → ``raw/<ds>/<split>/chunk-000/shard-00000.parquet``."""
    return posixpath.join(RAW_DIR, posixpath.relpath(shard_rel, DATA_DIR))


def dataset_dir(dataset: str) -> str:
    return posixpath.join(DATASETS_DIR, safe_component(dataset))


def dataset_file(dataset: str, name: str) -> str:
    """``dataset_file("bridge", MANIFEST)`` → ``meta/datasets/bridge/manifest.json``."""
    return posixpath.join(dataset_dir(dataset), posixpath.basename(name))


def work_dir(dataset: str) -> str:
    """Completion markers of one ingest: what makes a rerun resume."""
    return posixpath.join(dataset_dir(dataset), "_work")


def group_marker(dataset: str, group: int) -> str:
    """Written last by the task that converts the group: its presence means the group is done."""
    return posixpath.join(work_dir(dataset), f"group-{group:06d}.json")


def plan_marker(dataset: str) -> str:
    """What this dataset's ingest was planned from: a different input for the same name is refused."""
    return posixpath.join(work_dir(dataset), "plan.json")


def embodiment_file(dataset: str, embodiment: str) -> str:
    return posixpath.join(dataset_dir(dataset), "embodiments", f"{safe_component(embodiment)}.yaml")


def spec_file(dataset: str) -> str:
    return posixpath.join(dataset_dir(dataset), "spec.yaml")


def features_dir(key: str) -> str:
    return posixpath.join(FEATURES_DIR, safe_component(key))


def features_path(key: str, shard_rel: str) -> str:
    """``data/<ds>/.../shard-00000.parquet`` → ``features/<key>/data/<ds>/.../shard-00000.parquet`` (same rows)."""
    return posixpath.join(features_dir(key), shard_rel)
