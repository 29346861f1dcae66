"""The training feed: corpus shards (+ their aligned feature shards) → normalized per-step samples, on Ray Data.

Why this shape: an action chunk needs the H steps after a row *inside its episode*, so samples are assembled where
whole episodes are at hand — one read task per ingest shard (a shard holds whole episodes, one row group each), its
feature shard zipped row for row (``FeatureReader``: same rows, same order; never a join). Each task emits only the
samples the epoch's mixture draw picked from that shard, so a training block never needs a neighbour.

The schedule (``plan_schedule``) is data, fixed by (corpus, mixture, seed, epochs): per epoch a seeded multinomial
over the mixture's datasets (``tokenization/sampling/mixtures.py`` presets, the corpus YAML's weights applied), split
over each dataset's shards by rows, the shard items shuffled; a read task picks its count of samples from the shard's
candidates (steps with at least one supervised value) in a seeded order. Every sample has a global ``position`` in
the schedule, which is what resume skips by (``docs/training.md``).

A sample (the ``vlaflow.models.vla`` contract): ``target`` [H, ACTION.width + TRAJECTORY.width] = the normalized
action of steps t..t+H-1 ‖ the row's own trajectory target (ego rows; horizon clipped/padded to H);
``target_mask`` = slot mask AND ``action_valid`` (per step) AND step inside the episode, ‖ ``trajectory_mask``;
``state``/``state_mask`` normalized; ``vision`` [cameras, tokens, D] from features, or ``images`` per camera for
``vision="encoder"``. Normalization: ``Normalizer`` per (dataset, embodiment) with the corpus' ``stats.json``.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlaflow.schemas import ACTION, STATE, TRAJECTORY, VISION_LANGUAGE, Col, InputError
from vlaflow.schemas.arrow import fixed_to_numpy, strings_to_numpy, trajectory_to_numpy
from vlaflow.tokenization.normalization import Normalizer

from .corpus import Corpus
from .layout import FEATURES_DIR, STATS, features_dir
from .storage import Output

TARGET_WIDTH = ACTION.width + TRAJECTORY.width
VISION_MODES = ("features", "encoder", "none")
STRING_FIELDS = ("dataset", "embodiment", "task_family", "instruction", "embodiment_prompt", "episode_id")
STEP_COLUMNS = [Col.DATASET, Col.EMBODIMENT, Col.EMBODIMENT_PROMPT, Col.TASK_FAMILY, Col.INSTRUCTION, Col.EPISODE_ID,
                Col.STEP_INDEX, Col.ACTION, Col.ACTION_MASK, Col.ACTION_VALID, Col.STATE, Col.STATE_MASK,
                Col.TRAJECTORY, Col.TRAJECTORY_MASK, Col.CONVERSATION]


@dataclass
class FeedConfig:
    """What the feed reads and how it samples; every field is a YAML key under ``data:``."""

    corpus: str = ""                 # a corpus root or a corpus YAML
    horizon: int = 8                 # H: steps per action chunk (the model's horizon)
    mixture: str = "uniform"         # a preset of tokenization/sampling/mixtures.py
    balance: bool = False            # weight × dataset rows (Octo's balance_weights)
    seed: int = 0
    epochs: int = 1
    samples_per_epoch: int | None = None  # default: the rows of the datasets the mixture selects
    splits: list | None = None       # default: every split
    vision: str = "features"         # features | encoder (raw frames) | none
    features_key: str | None = None  # folder under OUT/features/; default: the root's only one
    cameras: list = field(default_factory=lambda: ["primary"])
    vision_tokens: int = 1           # 1 = pooled vector; k = the features' k patch tokens
    normalization: str = "quantile"  # Normalizer mode
    stats: str | None = None         # default: OUT/meta/stats.json (a YAML's <name>.stats.json)

    def __post_init__(self):
        self.cameras = list(self.cameras)
        if self.vision not in VISION_MODES:
            raise InputError(f"data.vision: {self.vision!r} is not one of {', '.join(VISION_MODES)}")
        for k in ("horizon", "epochs", "vision_tokens"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"data.{k}: expected an integer >= 1, got {v!r}")
        if self.samples_per_epoch is not None and (not isinstance(self.samples_per_epoch, int)
                                                   or self.samples_per_epoch < 1):
            raise InputError(f"data.samples_per_epoch: expected an integer >= 1, got {self.samples_per_epoch!r}")
        if not self.cameras:
            raise InputError("data.cameras: name at least one camera role")


# ------------------------------------------------------------------------------------------------- statistics
def stats_path(corpus_path: str) -> tuple[Output, str]:
    """Where ``vlaflow stats`` writes a corpus' document: ``OUT/meta/stats.json``, or ``<name>.stats.json`` beside a
    corpus YAML."""
    if corpus_path.endswith((".yaml", ".yml")):
        stem = corpus_path.rsplit(".", 1)[0]
        return Output(posixpath.dirname(stem) or "."), posixpath.basename(stem) + ".stats.json"
    return Output(corpus_path), STATS


def load_stats(corpus_path: str, explicit: str | None = None) -> dict:
    """The statistics the feed normalizes with; missing → a one-line error naming the command to run."""
    if explicit:
        out, rel = Output(posixpath.dirname(explicit) or "."), posixpath.basename(explicit)
    else:
        out, rel = stats_path(corpus_path)
    if not out.exists(rel):
        raise InputError(f"{out.uri.rstrip('/')}/{rel}: no normalization statistics; run `vlaflow stats {corpus_path}`")
    try:
        doc = out.read_json(rel)
    except (ValueError, OSError) as err:
        raise InputError(f"{out.uri}/{rel}: unreadable statistics ({type(err).__name__})") from None
    if not isinstance(doc, dict) or "groups" not in doc:
        raise InputError(f"{out.uri}/{rel}: not a vlaflow stats.json; run `vlaflow stats {corpus_path}`")
    return doc


class SampleNormalizer:
    """Action, state and trajectory normalizers of one stats document, per (dataset, embodiment)."""

    def __init__(self, stats: dict, mode: str):
        self.stats, self.mode = stats, mode
        self.action = Normalizer(stats, mode, "action")
        self.state = Normalizer(stats, mode, "state")
        self.trajectory = Normalizer(stats, mode, TRAJECTORY)

    def _check(self, dataset: str, embodiment: str) -> dict:
        g = self.stats["groups"].get(f"{dataset}/{embodiment}")
        if g is None:
            raise InputError(f"stats.json has no statistics for {dataset}/{embodiment}; re-run `vlaflow stats` on "
                             "the corpus (it changed since)")
        return g

    def normalize(self, dataset: str, embodiment: str, action=None, state=None, trajectory=None):
        g = self._check(dataset, embodiment)
        a = self.action.normalize(action, dataset, embodiment) if action is not None else None
        s = self.state.normalize(state, dataset, embodiment) if state is not None else None
        t = trajectory
        if trajectory is not None and g.get("trajectory"):
            t = self.trajectory.normalize(trajectory, dataset, embodiment)
        return a, s, t

    def denormalize_action(self, y, dataset: str, embodiment: str) -> np.ndarray:
        self._check(dataset, embodiment)
        return self.action.denormalize(y, dataset, embodiment)

    def denormalize_trajectory(self, y, dataset: str, embodiment: str) -> np.ndarray:
        g = self._check(dataset, embodiment)
        return self.trajectory.denormalize(y, dataset, embodiment) if g.get("trajectory") else np.asarray(y)


# --------------------------------------------------------------------------------------------------- features
def features_key_of(root: Output, key: str | None) -> str:
    """The features folder to read: the given key, or the root's only finished one."""
    if key:
        return key
    found = sorted(posixpath.basename(posixpath.dirname(f)) for f in root.list_files(FEATURES_DIR)
                   if f.count("/") == 2 and f.endswith("/manifest.json")) if root.exists(FEATURES_DIR) else []
    if not found:
        raise InputError(f"{root.uri}: no vision features; run `vlaflow features {root.uri} --encoder ENCODER` "
                         "(or train with data.vision: none / encoder)")
    if len(found) > 1:
        raise InputError(f"{root.uri}: several features folders {found}; set data.features_key")
    return found[0]


def features_manifest(root: Output, key: str) -> dict:
    rel = posixpath.join(features_dir(key), "manifest.json")
    if not root.exists(rel):
        raise InputError(f"{root.uri}: no finished features {key!r} ({rel} absent); run "
                         f"`vlaflow features {root.uri} --encoder ENCODER --key {key}`")
    return root.read_json(rel)


def features_signature(manifest: dict) -> dict:
    """What makes two roots' (or a checkpoint's and a corpus') features interchangeable."""
    return {"encoder_fingerprint": manifest.get("encoder_fingerprint"), "dim": manifest["dim"],
            "tokens": manifest["tokens"], "dtype": manifest["dtype"]}


# ------------------------------------------------------------------------------------------------- assembly
def episode_bounds(episode_ids: np.ndarray) -> np.ndarray:
    """For every row, the index one past the last row of its episode (rows of an episode are contiguous)."""
    n = len(episode_ids)
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(episode_ids[1:] != episode_ids[:-1]) + 1
    ends = np.concatenate([change, [n]])
    starts = np.concatenate([[0], change])
    out = np.empty(n, np.int64)
    for a, b in zip(starts, ends):
        out[a:b] = b
    return out


def assemble_chunks(action: np.ndarray, action_mask: np.ndarray, action_valid: np.ndarray, episode_ids,
                    horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, H, width] chunks starting at every row and their masks: step k of row t's chunk is row t+k when it lies
    inside t's episode (else zeros, masked); its mask is the slot mask AND ``action_valid``."""
    n = len(action)
    ends = episode_bounds(np.asarray(episode_ids, object))
    idx = np.arange(n)[:, None] + np.arange(horizon)[None, :]
    inside = idx < ends[:, None]
    idx = np.where(inside, idx, 0)
    chunk = np.where(inside[..., None], action[idx], 0).astype(np.float32)
    mask = inside[..., None] & action_mask[idx] & action_valid[idx][..., None]
    return chunk, mask


def trajectory_targets(traj: np.ndarray | None, traj_mask: np.ndarray | None, n: int, horizon: int):
    """Row t's own future trace, its horizon clipped or padded (masked) to H; rows without one all masked."""
    out = np.zeros((n, horizon, TRAJECTORY.width), np.float32)
    mask = np.zeros((n, horizon, TRAJECTORY.width), bool)
    if traj is not None:
        h = min(horizon, traj.shape[1])
        out[:, :h], mask[:, :h] = traj[:, :h], traj_mask[:, :h]
    return out, mask


@dataclass
class ShardSamples:
    """Every candidate sample of one shard, normalized, as columns (plus what locates each in the corpus)."""

    columns: dict  # name -> np.ndarray (N first)
    candidates: np.ndarray  # row indices with at least one supervised value

    def take(self, rows: np.ndarray) -> dict:
        return {k: v[rows] for k, v in self.columns.items()}


def shard_samples(steps: pa.Table, horizon: int, norm: SampleNormalizer, vision: dict | None = None,
                  images: dict | None = None) -> ShardSamples:
    """Samples of every row of a table of whole episodes (a shard, or one episode). ``vision``: {"vision": [N, C, k,
    D], "vision_mask": [N, C]}; ``images``: {role: [N] frames as stored (bytes, an MP4 reference or None)}."""
    n = steps.num_rows
    ds, emb = strings_to_numpy(steps[Col.DATASET]), strings_to_numpy(steps[Col.EMBODIMENT])
    eps = strings_to_numpy(steps[Col.EPISODE_ID])
    action = np.array(fixed_to_numpy(steps[Col.ACTION], ACTION.width, np.float32))  # writable copies
    amask = fixed_to_numpy(steps[Col.ACTION_MASK], ACTION.width, bool)
    valid = steps[Col.ACTION_VALID].to_numpy(zero_copy_only=False).astype(bool)
    state = np.array(fixed_to_numpy(steps[Col.STATE], STATE.width, np.float32))
    smask = fixed_to_numpy(steps[Col.STATE_MASK], STATE.width, bool)
    traj, tmask = trajectory_to_numpy(steps)
    families = strings_to_numpy(steps[Col.TASK_FAMILY])
    vl = families == VISION_LANGUAGE  # no action, state or body: no statistics, nothing to normalize
    # normalize per (dataset, embodiment) group, before chunking (a row's values are the same in every chunk)
    traj_n = None if traj is None else traj.copy()
    for key in sorted(set(zip(ds[~vl], emb[~vl]))):
        rows = np.flatnonzero((ds == key[0]) & (emb == key[1]) & ~vl)
        a, s, t = norm.normalize(key[0], key[1], action[rows], state[rows], None if traj is None else traj[rows])
        action[rows], state[rows] = a, s
        if traj is not None:
            traj_n[rows] = t
    chunk, cmask = assemble_chunks(action, amask, valid, eps, horizon)
    ttarget, ttmask = trajectory_targets(traj_n, tmask, n, horizon)
    target = np.concatenate([chunk, ttarget], axis=2)
    tmask_all = np.concatenate([cmask, ttmask], axis=2)
    target[~tmask_all] = 0.0
    state[~smask] = 0.0
    conversation = np.full(n, "", object)  # JSON of the turns (vision_language rows), "" elsewhere
    if Col.CONVERSATION in steps.column_names and vl.any():
        for i, turns in zip(np.flatnonzero(vl), steps[Col.CONVERSATION].combine_chunks().take(np.flatnonzero(vl)).to_pylist()):
            conversation[i] = json.dumps(turns) if turns else ""
    cols = {"dataset": ds, "embodiment": emb, "task_family": families, "conversation": conversation,
            "instruction": strings_to_numpy(steps[Col.INSTRUCTION]), "embodiment_prompt": strings_to_numpy(steps[Col.EMBODIMENT_PROMPT]),
            "episode_id": eps, "step_index": steps[Col.STEP_INDEX].to_numpy(zero_copy_only=False).astype(np.int64),
            "state": state, "state_mask": smask, "target": target, "target_mask": tmask_all}
    if vision is not None:
        cols.update(vision)
    for c, (role, values) in enumerate((images or {}).items()):  # numbered: sorted column order = camera order
        cols[f"image.{c:02d}.{role}"] = values
    return ShardSamples(cols, np.flatnonzero(tmask_all.reshape(n, -1).any(1) | (conversation != "")))


def feature_arrays(reader_arrays, table: pa.Table, roles: list[str], tokens: int, dim: int, available: list[str]):
    """{"vision": [N, C, k, D] float16, "vision_mask": [N, C]} for the config's cameras (absent ones masked)."""
    n = table.num_rows
    vis = np.zeros((n, len(roles), tokens, dim), np.float16)
    vmask = np.zeros((n, len(roles)), bool)
    for c, role in enumerate(roles):
        if role not in available:
            continue
        vals, mask = reader_arrays(table, role, tokens > 1)
        vis[:, c] = (vals if tokens > 1 else vals[:, None, :]).astype(np.float16)
        vmask[:, c] = mask
    return {"vision": vis, "vision_mask": vmask}


def image_columns(table: pa.Table, roles: list[str]) -> dict:
    """Per camera the step's frame as stored: image bytes, an MP4 reference (a dict) or None."""
    out = {}
    n = table.num_rows
    for role in roles:
        vals: list = [None] * n
        if Col.IMAGES in table.schema.names and role in table.schema.field(Col.IMAGES).type.names:
            vals = table[Col.IMAGES].combine_chunks().field(role).field("bytes").to_pylist()
        if Col.VIDEOS in table.schema.names and role in table.schema.field(Col.VIDEOS).type.names:
            refs = table[Col.VIDEOS].combine_chunks().field(role).to_pylist()
            vals = [ref if v is None and ref and ref.get("path") else v for v, ref in zip(vals, refs)]
        out[role] = _objects(vals)
    return out


def _objects(values: list) -> np.ndarray:
    """A 1-D object array, element by element (np.asarray would stack equal-length bytes or dicts)."""
    out = np.empty(len(values), object)
    out[:] = values
    return out


class FrameSource:
    """Turns a stored frame (bytes or an MP4 reference) into what a sample carries; one video reader per task."""

    def __init__(self, root: str):
        self.root, self._reader = root, None

    def rgb_or_bytes(self, entry):
        if not isinstance(entry, dict):
            return entry
        if self._reader is None:
            from vlaflow.media import FrameReader

            self._reader = FrameReader(self.root)
        return self._reader.frame(None, entry)

    def encoded(self, entry):
        """Bytes (MP4 frames re-encoded as PNG, so a sample stays bytes; the encoder's processor decodes either)."""
        frame = self.rgb_or_bytes(entry)
        return _png(frame) if isinstance(frame, np.ndarray) else frame


def _png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


# -------------------------------------------------------------------------------------------------- schedule
@dataclass
class ReadItem:
    """One read task: ``count`` samples of one shard in one epoch, at ``position`` of the global schedule."""

    epoch: int
    position: int  # global index of this item's first sample
    root: str
    shard: str
    dataset: str
    count: int
    seed: int
    skip: int = 0  # samples of this item already consumed (resume)


@dataclass
class Schedule:
    items: list  # ReadItem, in schedule order
    probabilities: dict  # dataset -> mixture probability
    samples_per_epoch: int
    epochs: int

    @property
    def total(self) -> int:
        return self.samples_per_epoch * self.epochs

    def counts(self, epoch: int) -> dict:
        out: dict = {}
        for it in self.items:
            if it.epoch == epoch:
                out[it.dataset] = out.get(it.dataset, 0) + it.count
        return out

    def starting_at(self, position: int) -> list:
        """The items from a global sample position on (earlier ones dropped, the straddling one trimmed)."""
        out = []
        for it in self.items:
            if it.position + it.count <= position:
                continue
            out.append(ReadItem(**{**asdict(it), "skip": max(0, position - it.position)}))
        return out


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:8], "little")


def plan_schedule(corpus: Corpus, cfg: FeedConfig) -> Schedule:
    """Per epoch: a seeded multinomial over the mixture's datasets, split over each dataset's shards by rows; the
    shard items of an epoch in a seeded random order."""
    probs = corpus.mixture(cfg.mixture, cfg.balance)
    by_ds: dict[str, list] = {}
    for root, s in corpus.shards():
        if s.dataset in probs and (not cfg.splits or s.split in cfg.splits):
            by_ds.setdefault(s.dataset, []).append((root.uri, s.path, s.rows))
    missing = sorted(set(probs) - set(by_ds))
    if missing:
        raise InputError(f"mixture {cfg.mixture!r}: dataset(s) {missing} have no shards"
                         + (f" in splits {cfg.splits}" if cfg.splits else ""))
    names = sorted(probs)
    p = np.array([probs[n] for n in names])
    size = cfg.samples_per_epoch or sum(r for n in names for _, _, r in by_ds[n])
    items, pos = [], 0
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng(_seed(cfg.seed, epoch, "epoch"))
        per_ds = rng.multinomial(size, p / p.sum())
        epoch_items = []
        for name, k in zip(names, per_ds):
            shards = by_ds[name]
            rows = np.array([r for _, _, r in shards], np.float64)
            for (root, path, _), c in zip(shards, rng.multinomial(int(k), rows / rows.sum())):
                if c:
                    epoch_items.append((root, path, name, int(c)))
        for j in rng.permutation(len(epoch_items)):
            root, path, name, c = epoch_items[j]
            items.append(ReadItem(epoch, pos, root, path, name, c, _seed(cfg.seed, epoch, path)))
            pos += c
    return Schedule(items, probs, size, cfg.epochs)


def pick(candidates: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` rows from the candidates in a seeded order, cycling through fresh permutations when count exceeds them."""
    rng = np.random.default_rng(seed)
    if len(candidates) == 0:
        return np.zeros(0, np.int64)
    out = []
    while sum(len(o) for o in out) < count:
        out.append(candidates[rng.permutation(len(candidates))])
    return np.concatenate(out)[:count]


# ------------------------------------------------------------------------------------------------------ feed
@dataclass
class Feed:
    """Everything a read task needs, picklable: it reads one shard and emits its picked samples as one block."""

    cfg: FeedConfig
    stats: dict
    features_key: str | None
    features_dim: int
    features_tokens: int
    features_signature: dict | None = None  # the encoder the features come from (every root the same)
    image_processor: str | None = None  # vision: encoder — the encoder whose preprocessing the read tasks apply

    def read_item(self, item: ReadItem) -> dict:
        """The item's picked samples as one block (cameras as image bytes)."""
        block = self._picked(item)
        frames = FrameSource(item.root)
        for k in [k for k in block if k.startswith("image.")]:
            block[k] = _objects([frames.encoded(e) for e in block[k]])
        return block

    def blocks(self, item: ReadItem, max_bytes: int = 16 << 20):
        """What a read task emits. With ``image_processor`` set (the training job sets it for ``vision: encoder``) the
        frames are decoded and preprocessed here, in parallel read tasks rather than in the trainer's collate, as
        ``pixel_values`` [n, C, 3, S, S] (uint8: the model normalizes them) + ``vision_mask``, in slices of at most
        ``max_bytes``; otherwise the block of ``read_item``."""
        if self.cfg.vision != "encoder" or not self.image_processor:
            yield self.read_item(item)
            return
        from vlaflow.models.vla.vision import preprocess_frames

        block = self._picked(item)
        keys = sorted(k for k in block if k.startswith("image."))
        rest = {k: v for k, v in block.items() if k not in keys}
        frames = FrameSource(item.root)
        n, start, size = len(block["position"]), 0, 8  # the first slice measures a row's bytes
        while start < n:
            stop = min(n, start + size)
            rows = [[frames.rgb_or_bytes(block[k][i]) for k in keys] for i in range(start, stop)]
            pv, mask = preprocess_frames(self.image_processor, rows)
            yield {**{k: v[start:stop] for k, v in rest.items()}, "pixel_values": pv, "vision_mask": mask}
            size = max(1, max_bytes // max(1, pv.nbytes // len(rows)))
            start = stop

    def _picked(self, item: ReadItem) -> dict:
        from .features import FeatureReader

        root = Output(item.root)
        norm = SampleNormalizer(self.stats, self.cfg.normalization)
        roles = list(self.cfg.cameras)
        vision = images = None
        cols = list(STEP_COLUMNS)
        schema = pq.read_schema(root.path(item.shard), filesystem=root.fs)
        cols = [c for c in cols if c in schema.names]
        if self.cfg.vision == "features":
            fr = FeatureReader(item.root, self.features_key)
            steps = fr.shard(item.shard, columns=cols)
            avail = [r for r in roles if FeatureReader.PREFIX + r in steps.schema.names]
            vision = feature_arrays(fr.arrays, steps, roles, self.cfg.vision_tokens, self.features_dim, avail)
        else:
            extra = [c for c in (Col.IMAGES, Col.VIDEOS) if c in schema.names] if self.cfg.vision == "encoder" else []
            steps = pq.read_table(root.path(item.shard), filesystem=root.fs, columns=cols + extra)
            if self.cfg.vision == "encoder":
                images = image_columns(steps, roles)
        samples = shard_samples(steps, self.cfg.horizon, norm, vision, images)
        rows = pick(samples.candidates, item.count, item.seed)[item.skip:]
        block = samples.take(rows)
        n = len(rows)
        block["epoch"] = np.full(n, item.epoch, np.int64)
        block["position"] = item.position + item.skip + np.arange(n, dtype=np.int64)
        return block


def block_to_samples(batch: dict) -> list[dict]:
    """A numpy batch (Ray Data's columns) → the contract's list of sample dicts."""
    n = len(batch["dataset"])
    image_cols = sorted(k for k in batch if k.startswith("image."))
    out = []
    for i in range(n):
        s = {k: (str(batch[k][i]) if k in STRING_FIELDS else batch[k][i]) for k in batch
             if not k.startswith("image.") and k != "conversation"}
        if "conversation" in batch and batch["conversation"][i]:
            s["conversation"] = json.loads(str(batch["conversation"][i]))  # [{"role", "text"}] (docs/vl.md)
        s["vision"] = batch["vision"][i] if "vision" in batch else None
        if "vision_mask" not in batch:
            s["vision_mask"] = np.zeros(0, bool)
        if image_cols:
            s["images"] = [batch[k][i] if batch[k][i] is not None else None for k in image_cols]
        out.append(s)
    return out


def build_feed(cfg: FeedConfig) -> tuple[Corpus, Feed, Schedule]:
    """Open the corpus, its statistics and features (one-line errors for each missing piece) and plan the schedule."""
    corpus = Corpus.open(cfg.corpus)
    stats = load_stats(cfg.corpus, cfg.stats)
    key, dim, tokens, sig = None, 0, 0, None
    if cfg.vision == "features":
        for r in corpus.roots:
            k = features_key_of(r.out, cfg.features_key)
            m = features_manifest(r.out, k)
            this = features_signature(m)
            if sig is not None and this != sig:
                raise InputError(f"{r.uri}: its features {k!r} come from another encoder or settings than the "
                                 "other roots'; run `vlaflow features` with the same --encoder on every root")
            sig, key, dim, tokens = this, k, m["dim"], m["tokens"]
        if cfg.vision_tokens > 1 and tokens != cfg.vision_tokens:
            raise InputError(f"data.vision_tokens={cfg.vision_tokens} but the features hold {tokens or 'no'} patch "
                             f"tokens; run `vlaflow features ROOT --tokens {cfg.vision_tokens} --key NAME`")
    schedule = plan_schedule(corpus, cfg)
    return corpus, Feed(cfg, stats, key, dim, tokens, sig if cfg.vision == "features" else None), schedule


def ray_dataset(feed: Feed, items: list):
    """One Ray Data read task per schedule item (= per shard per epoch): a block of that shard's picked samples."""
    import ray

    if not items:
        raise InputError("nothing left to train on: the schedule is consumed (raise data.epochs to continue)")
    rows = [{"item": json.dumps(asdict(it))} for it in items]

    def read(batch):
        for s in batch["item"]:
            yield from feed.blocks(ReadItem(**json.loads(s)))

    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(read, batch_size=1, batch_format="numpy", num_cpus=1, udf_modifying_row_count=True)
    # the schedule's order is the contract (resume skips by position): Train's DataConfig sets this for workers,
    # but its local mode (num_workers=0) hands the dataset over as is, so the dataset carries it itself
    ds.context.execution_options.preserve_order = True
    return ds
