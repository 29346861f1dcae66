"""The Hub dataset card (``README.md``) of a published corpus, generated from the corpus's own metadata.

Why here and generated: the catalog (``meta/manifest.json``) already knows every dataset's license, embodiment,
family, conventions, totals and ledger, so the card is derived from it alone and says nothing the data does not.
The YAML front matter carries what the Hub indexes (license per source, ``task_categories: [robotics]``, tags,
size category) and the ``configs:`` that make ``datasets.load_dataset(repo)`` load the shards: one config per
dataset, a ``default`` one over every dataset, and one per published features folder. The shards themselves carry
the ``huggingface`` feature metadata (``schemas/arrow.py``), so the cameras load as ``datasets.Image``.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import yaml

from vlaflow.schemas import CAMERA_ROLES, SCHEMA_VERSION, TASK_FAMILIES, Col
from vlaflow.schemas.arrow import step_schema
from vlaflow.schemas.slots import ACTION, STATE, TRAJ_HORIZON, TRAJECTORY

from .layout import DATA_DIR, FEATURES_DIR

# (pattern over the source's license text, Hub license id); the first that matches names the license.
_LICENSE_IDS = [
    (r"cc[\s_-]*by[\s_-]*nc[\s_-]*nd[\s_-]*(\d\.\d)", "cc-by-nc-nd-{}"),
    (r"cc[\s_-]*by[\s_-]*nc[\s_-]*sa[\s_-]*(\d\.\d)", "cc-by-nc-sa-{}"),
    (r"cc[\s_-]*by[\s_-]*nc[\s_-]*(\d\.\d)", "cc-by-nc-{}"),
    (r"cc[\s_-]*by[\s_-]*sa[\s_-]*(\d\.\d)", "cc-by-sa-{}"),
    (r"cc[\s_-]*by[\s_-]*nd[\s_-]*(\d\.\d)", "cc-by-nd-{}"),
    (r"cc[\s_-]*by[\s_-]*(\d\.\d)", "cc-by-{}"),
    (r"cc0|cc[\s_-]*zero", "cc0-1.0"),
    (r"apache[\s_-]*(?:license[\s_-]*)?(?:v(?:ersion)?[\s_-]*)?2", "apache-2.0"),
    (r"\bmit\b", "mit"),
    (r"bsd[\s_-]*3", "bsd-3-clause"),
    (r"bsd[\s_-]*2", "bsd-2-clause"),
]
_NON_COMMERCIAL = re.compile(r"non[\s_-]?commercial|\bnc\b|-nc-|cc[\s_-]*by[\s_-]*nc", re.I)

# Where each source asks to be cited: by dataset name first, then by converter. Plain references (authors, title,
# venue, year, arXiv), not BibTeX, so nothing is invented; each links to the paper.
_OPENX = ("Open X-Embodiment Collaboration. *Open X-Embodiment: Robotic Learning Datasets and RT-X Models.* "
          "ICRA 2024. [arXiv:2310.08864](https://arxiv.org/abs/2310.08864)")
_MATTERPORT = ("Chang et al. *Matterport3D: Learning from RGB-D Data in Indoor Environments.* 3DV 2017. "
               "[arXiv:1709.06158](https://arxiv.org/abs/1709.06158)")
CITATIONS_BY_DATASET = {
    "bridge_dataset": ["Walke et al. *BridgeData V2: A Dataset for Robot Learning at Scale.* CoRL 2023. "
                       "[arXiv:2308.12952](https://arxiv.org/abs/2308.12952)", _OPENX],
    "fractal20220817_data": ["Brohan et al. *RT-1: Robotics Transformer for Real-World Control at Scale.* RSS 2023. "
                             "[arXiv:2212.06817](https://arxiv.org/abs/2212.06817)", _OPENX],
    "kuka": ["Kalashnikov et al. *QT-Opt: Scalable Deep Reinforcement Learning for Vision-Based Robotic "
             "Manipulation.* CoRL 2018. [arXiv:1806.10293](https://arxiv.org/abs/1806.10293)", _OPENX],
    "language_table": ["Lynch et al. *Interactive Language: Talking to Robots in Real Time.* 2022. "
                       "[arXiv:2210.06407](https://arxiv.org/abs/2210.06407)", _OPENX],
}
CITATIONS_BY_CONVERTER = {
    "openx_rlds": [_OPENX + " (and the dataset's own paper, listed in the Open X-Embodiment dataset sheet)"],
    "epic_kitchens": ["Damen et al. *Rescaling Egocentric Vision: Collection, Pipeline and Challenges for "
                      "EPIC-KITCHENS-100.* IJCV 2022. [arXiv:2006.13256](https://arxiv.org/abs/2006.13256)"],
    "egodex": ["Hoque et al. *EgoDex: Learning Dexterous Manipulation from Large-Scale Egocentric Video.* 2025. "
               "[arXiv:2505.11709](https://arxiv.org/abs/2505.11709)"],
    "r2r": ["Anderson et al. *Vision-and-Language Navigation: Interpreting Visually-Grounded Navigation Instructions "
            "in Real Environments.* CVPR 2018. [arXiv:1711.07280](https://arxiv.org/abs/1711.07280)", _MATTERPORT],
    "rxr": ["Ku et al. *Room-Across-Room: Multilingual Vision-and-Language Navigation with Dense Spatiotemporal "
            "Grounding.* EMNLP 2020. [arXiv:2010.07954](https://arxiv.org/abs/2010.07954)", _MATTERPORT],
    "vlnce": ["Krantz et al. *Beyond the Nav-Graph: Vision-and-Language Navigation in Continuous Environments.* "
              "ECCV 2020. [arXiv:2004.02857](https://arxiv.org/abs/2004.02857)", _MATTERPORT],
    "vln_frames": [_MATTERPORT],
    "libero": ["Liu et al. *LIBERO: Benchmarking Knowledge Transfer for Lifelong Robot Learning.* NeurIPS 2023 "
               "Datasets and Benchmarks. [arXiv:2306.03310](https://arxiv.org/abs/2306.03310)"],
    "robomimic": ["Mandlekar et al. *What Matters in Learning from Offline Human Demonstrations for Robot "
                  "Manipulation.* CoRL 2021. [arXiv:2108.03298](https://arxiv.org/abs/2108.03298)"],
    "maniskill": ["Gu et al. *ManiSkill2: A Unified Benchmark for Generalizable Manipulation Skills.* ICLR 2023. "
                  "[arXiv:2302.04659](https://arxiv.org/abs/2302.04659)"],
    "robotwin": ["Mu et al. *RoboTwin: Dual-Arm Robot Benchmark with Generative Digital Twins.* CVPR 2025 "
                 "(and RoboTwin 2.0, 2025)"],
}

# What each step column holds (the schema table of the card; types come from the Arrow schema itself).
COLUMN_MEANINGS = {
    Col.DATASET: "source dataset name",
    Col.EPISODE_ID: "episode id, unique in the corpus",
    Col.STEP_INDEX: "step number within the episode, from 0",
    Col.TIMESTAMP_NS: "time since the episode start, integer nanoseconds",
    Col.TASK_FAMILY: " / ".join(TASK_FAMILIES),
    Col.EMBODIMENT: "embodiment id (spec in `meta/datasets/<dataset>/embodiments/`)",
    Col.EMBODIMENT_PROMPT: "a sentence describing the embodiment, for prompting",
    Col.INSTRUCTION: "the language instruction of the episode",
    Col.LANGUAGE: "language code of the instruction",
    Col.IMAGES: f"encoded frames per camera role ({', '.join(CAMERA_ROLES)}); HF `Image`; null where a "
                "dataset has no such camera",
    Col.STATE: f"normalized proprioceptive state, {STATE.width} named slots (zeros where masked)",
    Col.STATE_MASK: "which state slots this embodiment fills",
    Col.STATE_RAW: "the source's state values, flattened as the dataset's `state_raw_keys` say",
    Col.ACTION: f"normalized action, {ACTION.width} named slots (zeros where masked)",
    Col.ACTION_MASK: "which action slots this embodiment fills",
    Col.ACTION_RAW: "the source's action values, flattened as the dataset's `action_raw_keys` say",
    Col.ACTION_VALID: "false where the step's action is undefined",
    Col.IS_FIRST: "first step of its episode",
    Col.IS_LAST: "last step of its episode",
    Col.IS_TERMINAL: "the episode ended in a terminal state here",
    Col.REWARD: "the source's reward, when it has one",
    Col.DISCOUNT: "the source's discount, when it has one",
    Col.TRAJECTORY: f"future trace: {TRAJ_HORIZON} steps × {TRAJECTORY.width} values in the camera frame of this "
                    "row; null on robot rows",
    Col.TRAJECTORY_MASK: "which trajectory values are observed",
    Col.VIDEOS: "per camera role, `{path, frame_index}` into an MP4 under `videos/` when frames are stored as video",
    Col.CONVERSATION: "vision_language rows: chat turns {role, text} with one `<image>` per image; null elsewhere",
}

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
                   (1_000_000_000_000, "100B<n<1T")]


def license_id(text: str) -> str:
    """A source's license text (``"CC BY-NC 4.0 (EPIC-KITCHENS-100; non-commercial)"``) as a Hub license id
    (``cc-by-nc-4.0``); ``unknown`` when the source states none, ``other`` when no id matches."""
    t = (text or "").strip()
    if not t or t.lower() == "unknown":
        return "unknown"
    for pattern, hub_id in _LICENSE_IDS:
        m = re.search(pattern, t, re.I)
        if m:
            return hub_id.format(*m.groups())
    return "other"


def is_non_commercial(text: str) -> bool:
    return bool(_NON_COMMERCIAL.search(text or "")) or "-nc" in license_id(text)


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def split_name(folder: str) -> str:
    """A split folder as a `datasets` split name (``\\w+(\\.\\w+)*``)."""
    name = re.sub(r"[^\w.]+", "_", folder).strip("._") or "all"
    return re.sub(r"\.{2,}", ".", name)


def config_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^\w.-]+", "_", name) or "dataset"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out)
    return out


@dataclass
class DatasetCard:
    """The card's YAML (a dict) and markdown body; ``text`` is the ``README.md``."""

    metadata: dict
    body: str

    @property
    def text(self) -> str:
        front = yaml.safe_dump(self.metadata, sort_keys=False, allow_unicode=True, width=120)
        return f"---\n{front}---\n\n{self.body}"

    @staticmethod
    def parse(text: str) -> tuple[dict, str]:
        """(front matter, body) of a card's text; the inverse of ``text``."""
        if not text.startswith("---\n"):
            raise ValueError("a dataset card starts with a `---` YAML block")
        front, sep, body = text[4:].partition("\n---\n")
        if not sep:
            raise ValueError("the card's YAML block is not closed by `---`")
        return yaml.safe_load(front), body.lstrip("\n")


def _glob_dirs(paths: list[str], depth: int) -> dict[tuple, list[str]]:
    """Files grouped by their first ``depth`` folders (``data/<ds>/<split>``)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for p in paths:
        parts = p.split("/")
        groups[tuple(parts[:depth])].append(p)
    return groups


def build_configs(shard_paths: list[str], feature_shards: dict[str, list[str]] | None = None) -> list[dict]:
    """``configs:``: ``default`` over every dataset's shards, one per dataset, one per features folder. Globs
    (``data/<ds>/<split>/chunk-*/*.parquet``) name exactly the files listed, per split."""
    taken = {"default"}
    by_split: dict[str, list[str]] = defaultdict(list)
    per_dataset: dict[str, dict[str, str]] = defaultdict(dict)
    for (_, ds, split), _files in sorted(_glob_dirs(shard_paths, 3).items()):
        per_dataset[ds][split_name(split)] = f"{DATA_DIR}/{ds}/{split}/chunk-*/*.parquet"
        by_split[split_name(split)].append(split)
    configs = [{"config_name": "default", "default": True, "data_files": [
        {"split": s, "path": sorted({f"{DATA_DIR}/*/{folder}/chunk-*/*.parquet" for folder in folders})
         if len(set(folders)) > 1 else f"{DATA_DIR}/*/{folders[0]}/chunk-*/*.parquet"}
        for s, folders in sorted(by_split.items())]}]
    for ds, splits in sorted(per_dataset.items()):
        configs.append({"config_name": config_name(ds, taken),
                        "data_files": [{"split": s, "path": g} for s, g in sorted(splits.items())]})
    for key, paths in sorted((feature_shards or {}).items()):
        splits: dict[str, set] = defaultdict(set)
        for p in paths:  # features/<key>/data/<ds>/<split>/chunk-*/shard.parquet
            parts = p.split("/")
            splits[split_name(parts[4])].add(f"{FEATURES_DIR}/{key}/{DATA_DIR}/*/{parts[4]}/chunk-*/*.parquet")
        configs.append({"config_name": config_name(f"features-{key}", taken),
                        "data_files": [{"split": s, "path": sorted(g) if len(g) > 1 else next(iter(g))}
                                       for s, g in sorted(splits.items())]})
    return configs


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


_FLOATS = {"halffloat": "float16", "float": "float32", "double": "float64"}


def _arrow_type(name: str, t) -> str:
    if name == Col.IMAGES:
        return "struct<role: Image {bytes, path}>"
    if name == Col.VIDEOS:
        return "struct<role: {path: string, frame_index: int32}>"
    s = str(t)
    s = s.replace("dictionary<values=string, indices=int32, ordered=0>", "string (dictionary)")
    s = re.sub(r"fixed_size_list<item: (\w+)>\[(\d+)\]", r"\1[\2]", s)
    s = re.sub(r"list<item: (\w+)>", r"list<\1>", s)
    s = re.sub(r"fixed_size_list<item: (\w+)\[(\d+)\]>\[(\d+)\]", r"\1[\3, \2]", s)
    return re.sub(r"\b(halffloat|float|double)\b", lambda m: _FLOATS[m.group(1)], s)


def _encoder(m: dict) -> str:
    """A features folder's encoder as the card names it: its Hub id, never a local folder of the publisher's."""
    eid = str(m.get("encoder_id") or "")
    if eid and not eid.startswith(("/", ".", "~")) and eid.count("/") <= 1 and "\\" not in eid:
        return eid
    return f"a local {(m.get('encoder') or {}).get('model_class', 'model')}"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def build_card(manifest: dict, repo_id: str, *, stats: dict | None = None, features: dict | None = None,
               languages: list[str] | None = None) -> DatasetCard:
    """The card of a corpus root from its catalog (``CorpusManifest`` json), its ``meta/stats.json`` when present,
    and the manifests of the features folders published with it (``{key: features manifest}``)."""
    datasets, ingests = manifest["datasets"], manifest["ingests"]
    shard_paths = sorted(s["path"] for s in manifest["shards"])
    features = features or {}
    feature_shards = {k: sorted(s["path"] for s in m["shards"]) for k, m in features.items()}
    configs = build_configs(shard_paths, feature_shards)
    names = sorted(datasets)
    lic = {n: str(datasets[n].get("license") or "unknown") for n in names}
    ids = sorted({license_id(t) for t in lic.values()})
    nc = [n for n in names if is_non_commercial(lic[n])]
    totals = manifest["totals"]
    families = sorted({datasets[n]["task_family"] for n in names})
    embodiments = sorted({datasets[n]["embodiment"] for n in names})
    meta = {
        "license": ids[0] if len(ids) == 1 else ids,
        "pretty_name": repo_id.rsplit("/", 1)[-1],
        "task_categories": ["robotics"],
        "tags": ["robotics", "vlaflow", "vla", *families, *embodiments, *(["non-commercial"] if nc else [])],
        "size_categories": [size_category(int(totals["rows"]))],
        "configs": configs,
    }
    if languages:
        meta["language"] = languages
    body = [f"# {meta['pretty_name']}", ""]
    body.append(f"A vlaflow corpus in one Arrow schema (version {manifest['schema_version']}): "
                f"{len(names)} dataset(s), {totals['episodes']:,} episodes, {totals['rows']:,} steps in "
                f"{totals['shards']:,} Parquet shard(s) ({_mb(totals['bytes'])}"
                + (f", videos {_mb(totals['video_bytes'])}" if totals.get("video_bytes") else "") + "). "
                "Every source's actions and states are normalized into named slots (masks say which slots an "
                "embodiment fills); the source values are kept beside them (`action_raw`, `state_raw`).")
    body.append("")
    body.append("## Licenses")
    body.append("")
    body.append("Each source keeps its own license; this corpus is their union, so **the most restrictive one "
                "applies to any use of the whole**. Use a dataset's config to take only that dataset.")
    body.append("")
    if nc:
        body.append(f"> **Non-commercial sources:** {', '.join(f'`{n}`' for n in nc)}. Their terms forbid commercial "
                    "use; leave them out (pick the other configs) for anything commercial.")
        body.append("")
    body.append(_table(["dataset", "license (as the source states it)", "Hub id", "commercial use"],
                       [[f"`{n}`", lic[n], license_id(lic[n]), "**no**" if n in nc else
                         ("check" if license_id(lic[n]) in ("unknown", "other") else "yes")] for n in names]))
    body.append("")
    body.append("## Contents")
    body.append("")
    rows = []
    for n in names:
        e, d = ingests[n], datasets[n]
        t, led = e["totals"], e.get("ledger") or {}
        rows.append([f"`{n}`", f"{e['converter']} {e.get('converter_version', '')}".strip(), d["embodiment"],
                     d["task_family"], str(d.get("fps", "")).removesuffix("/1"), f"{t['episodes']:,}", f"{t['rows']:,}",
                     f"{led.get('episodes_quarantined', 0):,}", t["shards"], _mb(t["bytes"] + t.get("video_bytes", 0))])
    body.append(_table(["dataset", "converter", "embodiment", "family", "fps", "episodes", "steps", "quarantined",
                        "shards", "size"], rows))
    body.append("")
    for title, key in (("embodiment", "embodiment"), ("task family", "task_family")):
        agg: dict[str, list] = defaultdict(lambda: [0, 0, []])
        for n in names:
            a = agg[datasets[n][key]]
            a[0] += ingests[n]["totals"]["episodes"]
            a[1] += ingests[n]["totals"]["rows"]
            a[2].append(n)
        body.append(f"Per {title}:")
        body.append("")
        body.append(_table([title, "datasets", "episodes", "steps"],
                           [[f"`{k}`", ", ".join(v[2]), f"{v[0]:,}", f"{v[1]:,}"] for k, v in sorted(agg.items())]))
        body.append("")
    body.append("## Ledger")
    body.append("")
    body.append("Every source episode is accounted for: episodes in = episodes out + episodes quarantined (reasons "
                "in `meta/quarantine.jsonl`, one line per quarantined episode).")
    body.append("")
    lrows = []
    for n in names:
        led = ingests[n].get("ledger") or {}
        reasons = ", ".join(f"{k} × {v}" for k, v in sorted((led.get("by_reason") or {}).items())) or "—"
        lrows.append([f"`{n}`", led.get("episodes_in", ""), led.get("episodes_out", ""),
                      led.get("episodes_quarantined", ""), led.get("steps_in", ""), led.get("steps_out", ""),
                      reasons, "yes" if led.get("balanced", True) else "**no**"])
    body.append(_table(["dataset", "episodes in", "out", "quarantined", "steps in", "steps out", "reasons",
                        "balanced"], lrows))
    body.append("")
    body.append("## Schema")
    body.append("")
    body.append("One row per step; the rows of an episode are contiguous, in order, inside one row group. Slot "
                "names, units and offsets are in every shard's Parquet metadata (key `vlaflow`) and in "
                "`meta/manifest.json`.")
    body.append("")
    body.append(_table(["column", "type", "meaning"],
                       [[f"`{f.name}`", _arrow_type(f.name, f.type), COLUMN_MEANINGS.get(f.name, "")]
                        for f in step_schema()]))
    body.append("")
    body.append("## Conventions")
    body.append("")
    body.append("- positions in metres, angles in radians; rotations as rotation vectors (axis-angle), in the "
                "dataset's action frame;\n- grippers absolute in [0, 1], 1 = open, 0 = closed;\n- values in "
                "masked-out slots are exactly 0; `action_valid = false` marks steps whose action is undefined;\n"
                "- timestamps are integer nanoseconds from the episode start; `fps` is exact (`num/den`);\n"
                "- frames are the source's encoded bytes, untouched unless `image_transform` says otherwise.")
    body.append("")
    body.append("What each source used before normalization:")
    body.append("")
    body.append(_table(["dataset", "gripper", "rotation", "action frame", "control", "image transform", "cameras"],
                       [[f"`{n}`", datasets[n].get("gripper_convention", ""), datasets[n].get("rotation_repr", ""),
                         datasets[n].get("action_frame", ""), datasets[n].get("control_mode", ""),
                         datasets[n].get("image_transform", ""),
                         ", ".join(f"{r} ← {k}" for r, k in sorted((datasets[n].get("cameras") or {}).items()))]
                        for n in names]))
    body.append("")
    if stats:
        body.append(f"Normalization statistics (per dataset and embodiment, and per embodiment merged across "
                    f"datasets) are in `meta/stats.json`: {len(stats.get('groups', {}))} group(s) over "
                    f"{stats.get('rows', 0):,} rows, with quantiles {stats.get('quantile_keys', [])}.")
        body.append("")
    body.append("## Files")
    body.append("")
    body.append("```\ndata/<dataset>/<split>/chunk-NNN/shard-NNNNN.parquet   step rows (zstd Parquet)\n"
                + ("videos/<dataset>/...                                 MP4s referenced by `videos.<role>`\n"
                   if totals.get("video_bytes") else "")
                + "meta/manifest.json                                    the catalog: datasets, shards, "
                  "checksums, totals\nmeta/ledger.json, meta/quarantine.jsonl, meta/episodes.parquet\n"
                  "meta/datasets/<dataset>/                              each ingest: manifest, ledger, specs used\n"
                + "".join(f"features/{k}/                                  frozen-encoder features ({_encoder(m)}, "
                          f"D={m.get('dim')}, {m.get('dtype')}), rows aligned with data/\n"
                          for k, m in sorted(features.items()))
                + "```")
    body.append("")
    body.append("## Load it")
    body.append("")
    first = config_name(names[0], {"default"}) if names else "default"
    body.append(f"""With `datasets` (a config per dataset; `default` is all of them):

```python
from datasets import load_dataset

ds = load_dataset("{repo_id}", "{first}", split="{configs[1]['data_files'][0]['split'] if len(configs) > 1 else 'train'}")
ds[0]["images"]["primary"]  # a PIL image
```

With vlaflow (catalog, episodes, embodiment specs, frames; any stage reads `hf://` roots):

```python
from vlaflow.pipelines.corpus import Corpus

c = Corpus.open("hf://datasets/{repo_id}")   # or a local snapshot: huggingface_hub.snapshot_download(...)
c.datasets(); c.episodes()
steps = c.read_episode(c.episodes()["episode_id"][0].as_py())
```

With polars:

```python
import polars as pl

df = pl.scan_parquet("hf://datasets/{repo_id}/data/**/*.parquet").select("episode_id", "step_index", "action")
```

With Ray:

```python
import ray
from huggingface_hub import HfFileSystem

ds = ray.data.read_parquet("datasets/{repo_id}/data", filesystem=HfFileSystem(),
                           columns=["episode_id", "step_index", "action", "action_mask"])
```""")
    body.append("")
    body.append("## Citations")
    body.append("")
    body.append("Cite the sources you use:")
    body.append("")
    for n in names:
        refs = CITATIONS_BY_DATASET.get(n) or CITATIONS_BY_CONVERTER.get(ingests[n]["converter"])
        if refs:
            body.append(f"- `{n}`: " + "; ".join(refs))
        else:
            body.append(f"- `{n}`: see the source dataset's own page (converter `{ingests[n]['converter']}`)")
    body.append("")
    body.append(f"Converted with vlaflow (schema {SCHEMA_VERSION}); every shard's sha256 is in `meta/manifest.json`.")
    body.append("")
    return DatasetCard(meta, "\n".join(body))


def config_files(config: dict, files: list[str]) -> dict[str, list[str]]:
    """``{split: files}`` a config's ``data_files`` globs select from ``files`` (fnmatch, ``*`` within a folder)."""
    out: dict[str, list[str]] = {}
    for df in config["data_files"]:
        globs = df["path"] if isinstance(df["path"], list) else [df["path"]]
        out[df["split"]] = sorted({f for f in files for g in globs if _match(f, g)})
    return out


def _match(path: str, glob: str) -> bool:
    import fnmatch

    p, g = path.split("/"), glob.split("/")
    return len(p) == len(g) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(p, g))


__all__ = ["DatasetCard", "build_card", "build_configs", "config_files", "license_id", "is_non_commercial",
           "size_category"]
