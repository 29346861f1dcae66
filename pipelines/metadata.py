"""Typed metadata of an output: shard entries, the ledger, an ingest's group marker, a dataset's
manifest and the corpus manifest (the catalog). Every reader and writer goes through these classes,
so a field is named, defaulted and serialized in one place. JSON keys are the field names.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

from vlaflow.schemas import InputError

MANIFEST_VERSION = 1  # a dataset's manifest (one ingest)
CORPUS_VERSION = 2  # the corpus manifest at the root (manifest_version 1 = a root written before corpora)


class JsonRecord:
    """``to_json``/``from_json`` over dataclass fields; unknown keys from newer writers are ignored."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict, where: str = "metadata"):
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise InputError(f"{where}: not a vlaflow {cls.__name__} (missing {', '.join(missing)})")
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ShardEntry(JsonRecord):
    """One Parquet shard (and the MP4s beside it) as the manifest lists it."""

    path: str
    dataset: str
    split: str
    rows: int
    episodes: int
    row_groups: int
    bytes: int
    sha256: str
    videos: list = field(default_factory=list)  # {path, role, frames, bytes, sha256, codec, width, height}
    sources: list = field(default_factory=list)
    raw: dict | None = None  # the raw side table beside it: {path, bytes, sha256, columns}


@dataclass
class Ledger(JsonRecord):
    """What went in and out: episodes_in = episodes_out + episodes_quarantined, and steps likewise."""

    episodes_in: int = 0
    episodes_out: int = 0
    episodes_quarantined: int = 0
    steps_in: int = 0
    steps_out: int = 0
    steps_quarantined: int = 0
    by_reason: dict = field(default_factory=dict)
    balanced: bool = True

    def add(self, other: "Ledger") -> "Ledger":
        for k in ("episodes_in", "episodes_out", "episodes_quarantined", "steps_in", "steps_out", "steps_quarantined"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for code, n in other.by_reason.items():
            self.by_reason[code] = self.by_reason.get(code, 0) + n
        self.by_reason = dict(sorted(self.by_reason.items()))
        self.balanced = self.episodes_in == self.episodes_out + self.episodes_quarantined
        return self


@dataclass
class GroupMarker(JsonRecord):
    """Written last by the task that converts one group: its presence means the group is done."""

    group: int
    dataset: str
    split: str
    shard: dict | None  # ShardWriter.close() without episode_row_group; None when every episode was quarantined
    episodes_in: int
    episodes_out: int
    steps_in: int
    steps_out: int
    episodes: list  # episodes-table rows
    rejected: list  # quarantine entries
    sources: list
    warnings: list = field(default_factory=list)

    def ledger(self) -> Ledger:
        led = Ledger(self.episodes_in, self.episodes_out, len(self.rejected), self.steps_in, self.steps_out,
                     sum(r.get("steps", 0) for r in self.rejected))
        for r in self.rejected:
            led.by_reason[r["code"]] = led.by_reason.get(r["code"], 0) + 1
        return led

    def shard_entry(self) -> ShardEntry | None:
        if not self.shard:
            return None
        s = self.shard
        return ShardEntry(s["shard"], self.dataset, self.split, s["rows"], s["episodes"], s["row_groups"], s["bytes"],
                          s["sha256"], s.get("videos", []), self.sources, s.get("raw"))


def totals(shards: list[ShardEntry]) -> dict:
    return {"shards": len(shards), "rows": sum(s.rows for s in shards), "episodes": sum(s.episodes for s in shards),
            "bytes": sum(s.bytes for s in shards), "video_bytes": sum(v["bytes"] for s in shards for v in s.videos)}


@dataclass
class DatasetManifest(JsonRecord):
    """One ingest: what was read, how, and every shard it wrote (``meta/datasets/<name>/manifest.json``)."""

    schema_version: str
    converter: str
    converter_version: str
    input: str
    target_shard_mb: float
    datasets: dict  # {name: DatasetInfo json}, one entry
    schema: dict  # schema_metadata(datasets)
    shards: list  # ShardEntry json
    totals: dict
    episodes_table: str
    quarantine: str
    ledger: str
    warnings: list = field(default_factory=list)
    embodiments: dict = field(default_factory=dict)  # {id: path of the resolved spec YAML}
    spec: str | None = None  # path of the resolved dataset spec YAML, when the converter has one
    manifest_version: int = MANIFEST_VERSION

    @property
    def name(self) -> str:
        return next(iter(self.datasets))

    def shard_entries(self) -> list[ShardEntry]:
        return [ShardEntry.from_json(s, f"manifest of {self.name}") for s in self.shards]

    @classmethod
    def build(cls, *, shards: list[ShardEntry], **kw) -> "DatasetManifest":
        return cls(shards=[s.to_json() for s in shards], totals=totals(shards), **kw)


@dataclass
class IngestEntry(JsonRecord):
    """The catalog's line for one dataset of a corpus."""

    converter: str
    converter_version: str
    input: str
    manifest: str  # relative path of the dataset's own manifest
    manifest_sha256: str
    embodiment: str
    task_family: str
    totals: dict
    ledger: dict


@dataclass
class CorpusManifest(JsonRecord):
    """The root ``meta/manifest.json``: the catalog of every dataset ingested into this root, and the
    union of their shards, so a reader of the whole corpus needs one file."""

    schema_version: str
    datasets: dict  # {name: DatasetInfo json}
    schema: dict
    ingests: dict  # {name: IngestEntry json}
    shards: list  # ShardEntry json, datasets in name order
    totals: dict
    episodes_table: str
    quarantine: str
    ledger: str
    warnings: list = field(default_factory=list)
    manifest_version: int = CORPUS_VERSION

    def shard_entries(self) -> list[ShardEntry]:
        return [ShardEntry.from_json(s, "corpus manifest") for s in self.shards]

    def ingest_entries(self) -> dict[str, IngestEntry]:
        return {n: IngestEntry.from_json(e, f"catalog entry {n}") for n, e in self.ingests.items()}

    @classmethod
    def from_legacy(cls, d: dict) -> "CorpusManifest":
        """A root written before corpora (one ingest, its manifest at the root) read as a one-dataset corpus."""
        name = next(iter(d["datasets"]))
        info = d["datasets"][name]
        entry = IngestEntry(d["converter"], d["converter_version"], d["input"], "meta/manifest.json", "",
                            info["embodiment"], info["task_family"], d["totals"], {})
        return cls(d["schema_version"], d["datasets"], d["schema"], {name: entry.to_json()}, d["shards"], d["totals"],
                   d["episodes_table"], d["quarantine"], d["ledger"], d.get("warnings", []), 1)

    @classmethod
    def read(cls, d: dict, where: str) -> "CorpusManifest":
        if d.get("manifest_version") == 1 and "converter" in d:
            return cls.from_legacy(d)
        return cls.from_json(d, where)
