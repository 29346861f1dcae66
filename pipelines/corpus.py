"""A corpus: every dataset ingested into one root, or several roots listed in a corpus YAML.

``rebuild_root`` keeps a root's catalog (``meta/manifest.json``) and its corpus-wide ledger, quarantine
and episodes table in step with the datasets' own files; it is derived from them alone, so it is the same
whichever ingest finished last. ``Corpus`` is the one object that opens a corpus (local or any URI) for
every later stage: it lists datasets, embodiments, shards and episodes, and reads an episode's steps.

A corpus YAML spans roots without copying them::

    roots:
      - path: /data/my_ingest              # a root on disk (relative paths: to the YAML's folder)
      - path: s3://bucket/published        # or any URI an ingest output can live at (hf://datasets/org/name too)
        datasets: [bridge_dataset]         # optional: only these datasets of that root
        weights: {bridge_dataset: 0.5}     # optional: per-dataset mixture weights
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from vlaflow.schemas.names import is_safe_rel
from vlaflow.schemas import SCHEMA_VERSION, Col, EpCol, InputError, SpecError, schema_metadata
from vlaflow.schemas.embodiment import EmbodimentRegistry

from .layout import DATASETS_DIR, EPISODES, LEDGER, MANIFEST, QUARANTINE, raw_path
from .metadata import CorpusManifest, DatasetManifest, IngestEntry, Ledger, ShardEntry, totals
from .storage import Output


def parquet_bytes(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def dataset_manifests(out: Output) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every finished dataset manifest under the root, in dataset-name order."""
    rels = [f for f in out.list_files(DATASETS_DIR)
            if f.count("/") == 3 and posixpath.basename(f) == posixpath.basename(MANIFEST)]
    return [(rel, out.read_bytes(rel)) for rel in sorted(rels)]


def rebuild_root(out: Output) -> CorpusManifest:
    """The root's catalog, ledger, quarantine and episodes table as the union of its datasets'."""
    datasets, ingests, shards, warnings, episodes, quarantine = {}, {}, [], [], [], []
    led = Ledger()
    for rel, raw in dataset_manifests(out):
        m = DatasetManifest.from_json(json.loads(raw), rel)
        info = m.datasets[m.name]
        datasets[m.name] = info
        dled = Ledger.from_json(out.read_json(m.ledger), m.ledger)
        led.add(dled)
        ingests[m.name] = IngestEntry(m.converter, m.converter_version, m.input, rel, hashlib.sha256(raw).hexdigest(),
                                      info["embodiment"], info["task_family"], m.totals, dled.to_json()).to_json()
        shards.extend(m.shards)
        warnings.extend(w for w in m.warnings if w not in warnings)
        episodes.append(pq.read_table(out.path(m.episodes_table), filesystem=out.fs))
        quarantine.append(out.read_bytes(m.quarantine))
    entries = [ShardEntry.from_json(s) for s in shards]
    out.write_bytes(EPISODES, parquet_bytes(pa.concat_tables(episodes)))
    out.write_bytes(QUARANTINE, b"".join(quarantine))
    out.write_json(LEDGER, led.to_json())
    manifest = CorpusManifest(SCHEMA_VERSION, datasets, schema_metadata(datasets), ingests, shards, totals(entries),
                              EPISODES, QUARANTINE, LEDGER, warnings)
    out.write_json(MANIFEST, manifest.to_json())  # last
    return manifest


@dataclass
class CorpusRoot:
    """One root of a corpus, optionally narrowed to some of its datasets."""

    out: Output
    manifest: CorpusManifest
    datasets: list[str]
    weights: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.out.uri


class Corpus:
    """Opens a corpus root or a corpus YAML; every later stage reads data through it."""

    def __init__(self, roots: list[CorpusRoot], source: str):
        self.roots, self.source = roots, source
        self._where: dict[str, CorpusRoot] = {}
        for r in roots:
            for name in r.datasets:
                if name in self._where:
                    raise InputError(f"{source}: dataset {name!r} is in both {self._where[name].uri} and {r.uri}; "
                                     "narrow one root with `datasets:`")
                self._where[name] = r
        self._episodes: pa.Table | None = None
        self._readers: dict = {}  # root uri -> FrameReader

    # ------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str) -> "Corpus":
        """A root (folder or URI holding ``meta/manifest.json``) or a ``.yaml``/``.yml`` corpus file."""
        if path.endswith((".yaml", ".yml")):
            return cls._from_yaml(path)
        return cls([_open_root(path)], path)

    @classmethod
    def _from_yaml(cls, path: str) -> "Corpus":
        src = Output(_parent(path))
        name = posixpath.basename(path)
        if not src.is_file(name):
            raise InputError(f"{path}: no such corpus file")
        try:
            doc = yaml.safe_load(src.read_bytes(name))
        except yaml.YAMLError as err:
            raise SpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: cannot read the corpus file ({type(err).__name__}: {err})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("roots"), list) or not doc["roots"]:
            raise SpecError(f"{path}: a corpus file needs `roots:`, a list of {{path, datasets?, weights?}}")
        roots = []
        for i, item in enumerate(doc["roots"]):
            where = f"{path}: roots[{i}]"
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise SpecError(f"{where}: needs `path:` (a folder or URI)")
            unknown = set(item) - {"path", "datasets", "weights"}
            if unknown:
                raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: path, datasets, weights")
            rpath = _relative_to(path, item["path"])
            weights = item.get("weights") or {}
            if not isinstance(weights, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in weights.values()):
                raise SpecError(f"{where}: `weights` must map dataset names to non-negative numbers")
            roots.append(_open_root(rpath, item.get("datasets"), weights, where))
        return cls(roots, path)

    # ------------------------------------------------------------------------------------------- catalog
    def datasets(self) -> dict[str, dict]:
        """name -> DatasetInfo json, every dataset of the corpus."""
        return {n: r.manifest.datasets[n] for r in self.roots for n in r.datasets}

    def weights(self) -> dict[str, float]:
        return {n: float(w) for r in self.roots for n, w in r.weights.items()}

    def catalog(self) -> dict[str, dict]:
        """name -> DatasetInfo json with ``rows`` and ``episodes``: what mixtures resolve against."""
        out = {}
        for r in self.roots:
            for n in r.datasets:
                totals = r.manifest.ingests[n]["totals"]
                out[n] = {**r.manifest.datasets[n], "rows": totals["rows"], "episodes": totals["episodes"]}
        return out

    def mixture(self, name: str = "uniform", balance: bool = False) -> dict[str, float]:
        """Sampling probabilities of a mixture preset over this corpus, the corpus YAML's weights applied."""
        from vlaflow.tokenization.sampling.mixtures import get_mixture

        return get_mixture(name).resolve(self.catalog(), self.weights(), balance)

    def root_of(self, dataset: str) -> CorpusRoot:
        try:
            return self._where[dataset]
        except KeyError:
            raise InputError(f"dataset {dataset!r} is not in {self.source}; it has {sorted(self._where)}") from None

    def dataset_manifest(self, dataset: str) -> DatasetManifest | None:
        """The dataset's own manifest (None for a root written before corpora)."""
        root = self.root_of(dataset)
        rel = root.manifest.ingests[dataset]["manifest"]
        if root.manifest.manifest_version == 1:
            return None
        return DatasetManifest.from_json(root.out.read_json(rel), rel)

    def embodiments(self) -> EmbodimentRegistry:
        """Built-ins, overridden by the resolved specs each dataset's ingest wrote into the corpus."""
        specs = []
        for name in sorted(self._where):
            m = self.dataset_manifest(name)
            root = self.root_of(name)
            for rel in (m.embodiments.values() if m else ()):
                if not is_safe_rel(rel):
                    raise InputError(f"{root.uri}: embodiment path {rel!r} leaves the output folder")
                try:
                    specs.append(yaml.safe_load(root.out.read_bytes(rel)))
                except (OSError, yaml.YAMLError) as err:
                    raise SpecError(f"{root.uri}/{rel}: cannot read embodiment spec ({err})") from None
        return EmbodimentRegistry.builtin().with_specs(specs)

    def shards(self, dataset: str | None = None) -> list[tuple[CorpusRoot, ShardEntry]]:
        names = [dataset] if dataset else None
        found = []
        for r in self.roots:
            for s in r.manifest.shard_entries():
                if s.dataset in r.datasets and (names is None or s.dataset in names):
                    found.append((r, s))
        if dataset and not found:
            self.root_of(dataset)  # a named error for an unknown dataset
        return found

    def episodes(self) -> pa.Table:
        """One row per episode of every dataset (the roots' episodes tables, narrowed and concatenated)."""
        if self._episodes is None:
            parts = []
            for r in self.roots:
                t = pq.read_table(r.out.path(r.manifest.episodes_table), filesystem=r.out.fs)
                parts.append(t.filter(pc.is_in(t[EpCol.DATASET].cast(pa.string()), pa.array(r.datasets, pa.string()))))
            self._episodes = pa.concat_tables(parts, promote_options="default")
        return self._episodes

    def _locate(self, episode_id: str) -> tuple[dict, CorpusRoot]:
        eps = self.episodes()
        hit = pc.index(eps[EpCol.EPISODE_ID], episode_id).as_py()
        if hit < 0:
            raise InputError(f"episode {episode_id!r} is not in {self.source}")
        row = eps.slice(hit, 1).to_pylist()[0]
        return row, self.root_of(str(row[EpCol.DATASET]))

    def read_episode(self, episode_id: str, columns: list[str] | None = None) -> pa.Table:
        """An episode's steps, reading only its row group of its shard."""
        row, root = self._locate(episode_id)
        with root.out.fs.open_input_file(root.out.path(row[EpCol.SHARD_FILE])) as f:
            t = pq.ParquetFile(f).read_row_group(row[EpCol.ROW_GROUP], columns=columns)
        return t.filter(pc.equal(t[Col.EPISODE_ID], episode_id))

    def read_raw(self, episode_id: str, columns: list[str] | None = None) -> pa.Table:
        """An episode's source features kept verbatim (the raw side table, ``schemas/raw.py``): the same rows
        as ``read_episode``, from the same row group of the shard's raw file."""
        row, root = self._locate(episode_id)
        rel = raw_path(row[EpCol.SHARD_FILE])
        if not root.out.exists(rel):
            raise InputError(f"episode {episode_id!r}: its dataset keeps no raw source features ({rel} absent)")
        keep = None if columns is None else [Col.EPISODE_ID, Col.STEP_INDEX, *columns]
        with root.out.fs.open_input_file(root.out.path(rel)) as f:
            t = pq.ParquetFile(f).read_row_group(row[EpCol.ROW_GROUP], columns=keep)
        return t.filter(pc.equal(t[Col.EPISODE_ID], episode_id))

    def frames(self, episode_id: str, role: str) -> list:
        """An episode's decoded RGB frames of one camera, one per step, whether stored as images or as MP4
        references (one frame reader per root, its decoders in a bounded cache)."""
        from vlaflow.media import FrameReader

        _, root = self._locate(episode_id)
        t = self.read_episode(episode_id, columns=[Col.EPISODE_ID, Col.IMAGES, Col.VIDEOS])
        cams = [t[c].combine_chunks().field(role).to_pylist() if role in t.schema.field(c).type.names
                else [None] * t.num_rows for c in (Col.IMAGES, Col.VIDEOS)]
        if not any((i and i.get("bytes") is not None) or v for i, v in zip(*cams)):
            raise InputError(f"episode {episode_id!r} has no frames for camera {role!r}")
        if root.uri not in self._readers:
            self._readers[root.uri] = FrameReader(root.uri)
        return [self._readers[root.uri].frame(i, v) for i, v in zip(*cams)]


def _parent(uri: str) -> str:
    """The folder holding a file given by a path or URI (``s3://b/x/mix.yaml`` → ``s3://b/x``)."""
    scheme, sep, rest = uri.rpartition("://")
    return f"{scheme}{sep}{posixpath.dirname(rest)}" if sep else (posixpath.dirname(uri) or ".")


def _relative_to(corpus_file: str, path: str) -> str:
    """A root named in a corpus file: absolute paths and URIs as they are, relative ones against the file's folder
    (keeping its scheme, ``..`` resolved)."""
    if "://" in path or posixpath.isabs(path):
        return path
    scheme, sep, rest = _parent(corpus_file).rpartition("://")
    joined = posixpath.normpath(posixpath.join(rest, path))
    return f"{scheme}{sep}{joined}" if sep else joined


def _open_root(path: str, datasets=None, weights=None, where: str | None = None) -> CorpusRoot:
    out = Output(path)
    where = where or path
    if not out.exists(MANIFEST):
        raise InputError(f"{path}: not a vlaflow ingest output (no {MANIFEST}); run `vlaflow ingest` first")
    try:
        doc = out.read_json(MANIFEST)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}/{MANIFEST}: unreadable ({type(err).__name__}: {str(err)[:120]})") from None
    manifest = CorpusManifest.read(doc, f"{path}/{MANIFEST}")
    names = sorted(manifest.datasets)
    if datasets is not None:
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise SpecError(f"{where}: `datasets` must be a list of dataset names")
        missing = sorted(set(datasets) - set(names))
        if missing:
            raise SpecError(f"{where}: dataset(s) {missing} not in {path}; it has {names}")
        names = sorted(datasets)
    unknown = sorted(set(weights or {}) - set(names))
    if unknown:
        raise SpecError(f"{where}: weights for dataset(s) {unknown} not in this root ({names})")
    return CorpusRoot(out, manifest, names, dict(weights or {}))
