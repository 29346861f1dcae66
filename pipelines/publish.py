"""``vlaflow publish``: a corpus root to a Hugging Face dataset repo, with its generated card.

What goes up: the shards (and the MP4s and raw side tables beside them) the catalog lists, ``meta/`` (catalog,
ledger, quarantine, episodes table, stats, each dataset's manifest and the embodiment/dataset specs it used; never
resume state), the finished features folders on request, and ``README.md`` (``pipelines/dataset_card.py``).

How (huggingface_hub 2.x as installed): ``preupload_lfs_files`` then ``create_commit`` per batch, batches sized so
one run makes at most ``max_commits`` commits (the Hub allows about 128 commits per hour per repo); data first,
``meta/`` and the card in the last commit, so a repo with a card is complete. Before uploading, the remote tree is
listed and every file whose sha256 (LFS) or git blob id (regular file) equals the local one is skipped: a rerun
uploads nothing already there and a failed run resumes where it stopped (each commit is atomic). Transient errors
(429 with its Retry-After, 5xx, connection resets, concurrent-commit conflicts) are retried with backoff, counted
by kind and reported. The token comes from ``HF_TOKEN`` or the saved login; it is never printed or logged.

``dry_run=DIR`` touches no network: it writes the planned commits (``publish-plan.json``), the card and the exact
file layout (hard links where possible) to DIR, which ``datasets.load_dataset(DIR)`` loads through the card.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow.parquet as pq

from vlaflow.schemas import EpCol, InputError, VlaflowError
from vlaflow.schemas.names import is_safe_rel

from .corpus import Corpus
from .dataset_card import build_card
from .layout import EPISODES, FEATURES_DIR, MANIFEST, META_DIR, STATS
from .storage import Output

log = logging.getLogger("vlaflow.publish")

REPO_TYPE = "dataset"
PLAN_FILE = "publish-plan.json"
MAX_COMMITS = 100  # per run; the Hub allows ~128 commits/hour/repo
FILES_PER_COMMIT = 100  # the Hub's HTTP commit API is comfortable with ~50-100 files per commit
MAX_FILES_PER_COMMIT = 1000  # what huggingface_hub's own upload pipeline scales up to (COMMIT_SIZE_SCALE)
# Regular (non-LFS) files travel base64-encoded inside the commit payload; huggingface_hub keeps them under
# 100 MiB per commit. Files the Hub would store in git: under 10 MB and not of an LFS type.
REGULAR_BYTES_PER_COMMIT = 100 << 20
LFS_SUFFIXES = (".parquet", ".bin", ".mp4", ".arrow", ".npy", ".npz", ".zst", ".tar", ".gz", ".safetensors")
MAX_FILES_PER_FOLDER = 10_000  # a hard Hub limit
MAX_FILES = 100_000  # per repo
LAST = ("README.md", MANIFEST)  # committed last: their presence means the upload is complete


class PublishError(VlaflowError):
    """A publish that cannot go on (bad input, auth, a transient error past its retries); rerun to resume."""


@dataclass
class PlannedFile:
    path: str  # in the repo = relative to the root
    bytes: int
    sha256: str
    git_oid: str  # git blob sha1: what the Hub reports for a regular (non-LFS) file
    kind: str  # data | meta | features | card


@dataclass
class PublishResult:
    repo_id: str
    revision: str
    files: int
    bytes: int
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    skipped_files: int = 0  # already on the Hub with the same content
    commits: list = field(default_factory=list)  # [{message, files, oid}]
    retries: dict = field(default_factory=dict)  # kind -> count
    retry_events: list = field(default_factory=list)
    remote_only: int = 0  # files on the Hub this corpus does not have (left in place)
    dry_run: str | None = None
    left: int = 0  # files not uploaded because the run hit max_commits (rerun later to continue)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------- hashing
def _hashes(out: Output, rel: str) -> tuple[int, str, str]:
    """(size, sha256, git blob sha1) in one read."""
    size = out.size(rel)
    h256, h1 = hashlib.sha256(), hashlib.sha1()
    h1.update(f"blob {size}\0".encode())
    with out.fs.open_input_stream(out.path(rel)) as f:
        while chunk := f.read(8 << 20):
            h256.update(chunk)
            h1.update(chunk)
    return size, h256.hexdigest(), h1.hexdigest()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


# ------------------------------------------------------------------------------------------------- planning
def _is_state(rel: str) -> bool:
    """Resume state, temporary files: never published."""
    parts = rel.split("/")
    return "_work" in parts or any(p.startswith(".") for p in parts) or rel.endswith(".tmp")


def collect(out: Output, manifest: dict, with_features: bool) -> tuple[list[tuple[str, str, str | None]], dict]:
    """(path, kind, sha256 the catalog records or None) of every file to publish, and the finished features
    manifests ``{key: doc}`` (with_features only)."""
    files: list[tuple[str, str, str | None]] = []
    for s in manifest["shards"]:
        files.append((s["path"], "data", s["sha256"]))
        for v in s.get("videos") or []:
            files.append((v["path"], "data", v.get("sha256")))
        if s.get("raw"):
            files.append((s["raw"]["path"], "data", s["raw"].get("sha256")))
    feats: dict[str, dict] = {}
    if with_features:
        keys = sorted({f.split("/")[1] for f in out.list_files(FEATURES_DIR) if f.count("/") >= 2})
        for key in keys:
            mrel = posixpath.join(FEATURES_DIR, key, "manifest.json")
            if not out.exists(mrel):
                log.warning("features/%s has no manifest.json (unfinished); not published", key)
                continue
            doc = out.read_json(mrel)
            feats[key] = doc
            for s in doc["shards"]:
                files.append((s["path"], "features", s["sha256"]))
            for name in ("ledger.json", "quarantine.jsonl"):
                rel = posixpath.join(FEATURES_DIR, key, name)
                if out.exists(rel):
                    files.append((rel, "features", None))
            files.append((mrel, "features", None))
        if not feats:
            raise PublishError(f"{out.uri}: --with-features, but no finished features folder under {FEATURES_DIR}/ "
                               "(run `vlaflow features` first)")
    for rel in out.list_files(META_DIR):
        if not _is_state(rel):
            files.append((rel, "meta", None))
    seen, unique = set(), []
    for f in files:
        if not is_safe_rel(f[0]):  # paths come from the manifests: never one that leaves the root
            raise PublishError(f"{out.uri}: the catalog names {f[0]!r}, a path outside the corpus root")
        if f[0] not in seen:
            seen.add(f[0])
            unique.append(f)
    return unique, feats


def check_layout(paths: list[str]) -> None:
    """The Hub's hard limits: < 10k entries per folder, < 100k files per repo."""
    if len(paths) >= MAX_FILES:
        raise PublishError(f"{len(paths)} files to publish; a Hub repo holds fewer than {MAX_FILES}")
    entries: dict[str, set] = {}
    for p in paths:
        parts = p.split("/")
        for i in range(len(parts)):  # each folder's direct entries: files and sub-folders
            entries.setdefault("/".join(parts[:i]), set()).add(parts[i])
    entries = Counter({k: len(v) for k, v in entries.items()})
    worst = max(entries.items(), key=lambda kv: kv[1], default=("", 0))
    if worst[1] >= MAX_FILES_PER_FOLDER:
        raise PublishError(f"folder {worst[0] or '/'} would hold {worst[1]} entries; the Hub allows fewer than "
                           f"{MAX_FILES_PER_FOLDER} per folder")


def _languages(out: Output) -> list[str]:
    try:
        t = pq.read_table(out.path(EPISODES), columns=[EpCol.LANGUAGE], filesystem=out.fs)
    except (OSError, KeyError, ValueError):
        return []
    langs = sorted({str(x) for x in t[EpCol.LANGUAGE].to_pylist() if x})
    return [x for x in langs if x.isalpha() and 2 <= len(x) <= 3 and x.islower()]


@dataclass
class Plan:
    out: Output
    files: list[PlannedFile]  # README.md included, last
    card: str
    feature_keys: list[str]


def plan_publish(root: str, repo_id: str, with_features: bool = False) -> Plan:
    """Every file to publish with its hashes, and the card; checks catalog checksums and the Hub's limits."""
    if root.endswith((".yaml", ".yml")):
        raise PublishError(f"{root}: publish takes one corpus root, not a corpus YAML (publish each root)")
    _check_repo_id(repo_id)
    corpus = Corpus.open(root)
    croot = corpus.roots[0]
    out = croot.out
    manifest = out.read_json(MANIFEST)
    if not manifest.get("shards"):
        raise PublishError(f"{root}: the corpus has no shards to publish")
    listed, feats = collect(out, manifest, with_features)
    planned = []
    for rel, kind, want in listed:
        if not out.is_file(rel):
            raise PublishError(f"{root}: {rel} is listed in the catalog but missing; run `vlaflow validate {root}`")
        size, sha, oid = _hashes(out, rel)
        if want and want != sha:
            raise PublishError(f"{root}: {rel} changed since the catalog recorded it (sha256 differs); "
                               f"run `vlaflow validate {root}`")
        planned.append(PlannedFile(rel, size, sha, oid, kind))
    stats = out.read_json(STATS) if out.exists(STATS) else None
    card = build_card(manifest, repo_id, stats=stats, features=feats, languages=_languages(out)).text
    data = card.encode()
    planned.append(PlannedFile("README.md", len(data), hashlib.sha256(data).hexdigest(), git_oid(data), "card"))
    check_layout([p.path for p in planned])
    return Plan(out, planned, card, sorted(feats))


def _check_repo_id(repo_id: str) -> None:
    import re

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or "") or ".." in repo_id or "--" in repo_id:
        raise InputError(f"--repo-id must be ORG/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}")


def batches(todo: list[PlannedFile], max_commits: int = MAX_COMMITS,
            files_per_commit: int = FILES_PER_COMMIT) -> list[list[PlannedFile]]:
    """Commits in upload order: data, features, meta; ``LAST`` in the final one. Batches grow past
    ``files_per_commit`` when that keeps the run within ``max_commits``, up to ``MAX_FILES_PER_COMMIT`` files and
    ``REGULAR_BYTES_PER_COMMIT`` of regular-file content per commit."""
    order = {"data": 0, "features": 1, "meta": 2, "card": 3}
    last = [f for f in todo if f.path in LAST]
    rest = sorted((f for f in todo if f.path not in LAST), key=lambda f: (order[f.kind], f.path))
    n = len(rest) + len(last)
    if n == 0:
        return []
    per = min(MAX_FILES_PER_COMMIT, max(files_per_commit, -(-n // max_commits)))
    out: list[list[PlannedFile]] = []
    reg = 0  # regular bytes of the open batch
    for f in rest:
        if not out or len(out[-1]) >= per or reg + _regular([f]) > REGULAR_BYTES_PER_COMMIT:
            out.append([])
            reg = 0
        out[-1].append(f)
        reg += _regular([f])
    if last:  # the catalog and the card travel together, in the last commit
        if not out or len(out[-1]) + len(last) > per or reg + _regular(last) > REGULAR_BYTES_PER_COMMIT:
            out.append([])
        out[-1].extend(last)
    return out


def _regular(files: list[PlannedFile]) -> int:
    """Bytes of the files the Hub would keep in git (sent inside the commit payload)."""
    return sum(f.bytes for f in files if f.bytes < 10_000_000 and not f.path.endswith(LFS_SUFFIXES))


# ------------------------------------------------------------------------------------------------- retries
@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_s: float = 2.0  # backoff 2, 4, 8, ... s
    backoff_cap_s: float = 60.0
    max_wait_s: float = 3600.0  # a 429's Retry-After may ask for most of an hour (commits/hour)
    sleep: object = time.sleep


def classify(err: BaseException) -> tuple[str, float | None]:
    """(kind, seconds the server asked to wait or None). Kinds ending in ``!`` are not retried."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "offline!", None
    if isinstance(err, HfHubHTTPError):
        resp = getattr(err, "response", None)
        status = getattr(resp, "status_code", None)
        msg = str(err).lower()
        if status == 429 or "too many requests" in msg or "rate limit" in msg:
            after = None
            headers = getattr(resp, "headers", None) or {}
            for k in headers:
                if k.lower() == "retry-after" and str(headers[k]).strip().isdigit():
                    after = float(str(headers[k]).strip())
            return "rate_limited", after
        if status in (409, 412) or "a commit has happened since" in msg or "precondition failed" in msg:
            return "commit_conflict", None
        if "lfs-verify" in msg:
            return "lfs_verify", None
        if status is not None and 500 <= status < 600:
            return "server_error", None
        if status in (401, 403):
            return "auth!", None
        if status == 404:
            return "not_found!", None
        return f"http_{status}!", None
    try:
        import httpx2 as _httpx
    except ImportError:  # an older hub on httpx
        try:
            import httpx as _httpx
        except ImportError:
            _httpx = None
    if _httpx is not None and isinstance(err, _httpx.TransportError):
        return "connection", None
    if isinstance(err, (ConnectionError, TimeoutError)):
        return "connection", None
    return "error!", None


def _short(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}"


class Retrier:
    def __init__(self, policy: RetryPolicy, result: PublishResult):
        self.policy, self.result = policy, result

    def call(self, what: str, fn):
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - classified below; only transient kinds are retried
                kind, after = classify(err)
                if kind.endswith("!"):
                    raise PublishError(f"{what}: {_explain(kind, err)}") from None
                if attempt >= self.policy.max_retries:
                    raise PublishError(f"{what}: still failing after {attempt} retries ({kind}: {_short(err)}); "
                                       "rerun to resume (what is committed stays)") from None
                wait = after if after is not None else min(self.policy.backoff_cap_s, self.policy.base_s * 2 ** attempt)
                wait = min(self.policy.max_wait_s, wait + random.uniform(0, wait / 4))
                attempt += 1
                self.result.retries[kind] = self.result.retries.get(kind, 0) + 1
                self.result.retry_events.append({"call": what, "kind": kind, "attempt": attempt,
                                                 "wait_s": round(wait, 2)})
                log.warning("%s: %s (%s); retry %d/%d in %.1f s", what, kind, _short(err), attempt,
                            self.policy.max_retries, wait)
                self.policy.sleep(wait)


def _explain(kind: str, err: BaseException) -> str:
    return {
        "offline!": "huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); unset it, or use --dry-run DIR",
        "auth!": "not authorized (set HF_TOKEN or run `hf auth login` with a token that can write to this repo)",
        "not_found!": f"not found ({_short(err)})",
    }.get(kind, _short(err))


# ------------------------------------------------------------------------------------------------- upload
class _ArrowReader(io.BufferedIOBase):
    """A pyarrow input file (s3://, gs://, any fsspec root) as the seekable binary file ``CommitOperationAdd`` takes."""

    def __init__(self, out: Output, rel: str):
        self._f = out.fs.open_input_file(out.path(rel))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._f.read() if size is None or size < 0 else self._f.read(size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()


def _source(out: Output, f: PlannedFile, card: str):
    """A local path (hf_xet uploads it, deduplicating chunks), the card's bytes, or for a root on object storage a
    file object (huggingface_hub uploads those over plain LFS HTTP: no xet dedup, no local staging copy)."""
    if f.kind == "card":
        return card.encode()
    if "://" not in out.uri:
        return out.path(f.path)
    return _ArrowReader(out, f.path)


def remote_files(api, repo_id: str, revision: str, retrier: Retrier) -> dict[str, tuple[str | None, str]]:
    """``{path: (lfs sha256 or None, git blob id)}`` of the branch's tree (empty for a new repo or branch)."""
    from huggingface_hub.errors import RevisionNotFoundError

    def listing():
        try:
            return list(api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True))
        except RevisionNotFoundError:
            return []

    found = {}
    for e in retrier.call("list the remote tree", listing):
        if hasattr(e, "blob_id"):  # RepoFile (folders have no blob id)
            lfs = getattr(e, "lfs", None)
            sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
            found[e.path] = (sha, e.blob_id)
    return found


def _same(f: PlannedFile, remote: tuple[str | None, str] | None) -> bool:
    if remote is None:
        return False
    sha, oid = remote
    return sha == f.sha256 if sha else oid == f.git_oid


def publish(root: str, repo_id: str, *, private: bool = False, revision: str | None = None,
            with_features: bool = False, dry_run: str | None = None, api=None, policy: RetryPolicy | None = None,
            max_commits: int = MAX_COMMITS, files_per_commit: int = FILES_PER_COMMIT,
            on_commit=None) -> PublishResult:
    """Publish a corpus root to ``repo_id`` (a dataset repo), or write the plan to ``dry_run``. Resumable."""
    t0 = time.perf_counter()
    plan = plan_publish(root, repo_id, with_features)
    rev = revision or "main"
    result = PublishResult(repo_id, rev, len(plan.files), sum(f.bytes for f in plan.files))
    if dry_run is not None:
        return _dry_run(plan, dry_run, result, private, max_commits, files_per_commit, t0)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()  # token: HF_TOKEN or the saved login, resolved inside huggingface_hub
    retrier = Retrier(policy or RetryPolicy(), result)
    retrier.call("create the repo", lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private,
                                                             exist_ok=True))
    if rev != "main":
        retrier.call(f"create branch {rev}", lambda: api.create_branch(repo_id, branch=rev, repo_type=REPO_TYPE,
                                                                        exist_ok=True))
    remote = remote_files(api, repo_id, rev, retrier)
    todo = [f for f in plan.files if not _same(f, remote.get(f.path))]
    result.skipped_files = len(plan.files) - len(todo)
    result.remote_only = len(set(remote) - {f.path for f in plan.files} - {".gitattributes"})
    groups = batches(todo, max_commits, files_per_commit)
    if len(groups) > max_commits:
        result.left = sum(len(g) for g in groups[max_commits:])
        groups = groups[:max_commits]
    from huggingface_hub import CommitOperationAdd

    for i, group in enumerate(groups):
        message = f"vlaflow publish: {_describe(group)} (part {i + 1}/{len(groups)})"
        sources = [_source(plan.out, f, plan.card) for f in group]
        ops = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=src) for f, src in zip(group, sources)]
        try:
            retrier.call(f"upload part {i + 1}/{len(groups)}",
                         lambda: api.preupload_lfs_files(repo_id, additions=ops, repo_type=REPO_TYPE, revision=rev))
            info = retrier.call(f"commit part {i + 1}/{len(groups)}",
                                lambda: api.create_commit(repo_id, operations=ops, commit_message=message,
                                                          repo_type=REPO_TYPE, revision=rev))
        finally:  # the pre-upload drops its reference to a file object once uploaded: close ours
            for src in sources:
                if isinstance(src, io.IOBase):
                    src.close()
        oid = getattr(info, "oid", None)
        result.commits.append({"message": message, "files": len(group), "oid": oid})
        result.uploaded_files += len(group)
        result.uploaded_bytes += sum(f.bytes for f in group)
        log.info("committed %s (%d files)", message, len(group))
        if on_commit:
            on_commit(i + 1, len(groups))
    result.seconds = time.perf_counter() - t0
    return result


def _describe(group: list[PlannedFile]) -> str:
    kinds = Counter(f.kind for f in group)
    return ", ".join(f"{kinds[k]} {k}" for k in ("data", "features", "meta", "card") if kinds[k])


def _dry_run(plan: Plan, dest: str, result: PublishResult, private: bool, max_commits: int,
             files_per_commit: int, t0: float) -> PublishResult:
    """The exact layout of the repo in ``dest`` (hard links where the root is local) + the card + the plan."""
    if "://" in dest:
        raise InputError(f"--dry-run takes a local folder, got {dest!r}")
    dest = os.path.abspath(dest)
    src_root = os.path.abspath(plan.out.root) if "://" not in plan.out.uri else None
    if src_root and (dest == src_root or dest.startswith(src_root + os.sep)):
        raise InputError(f"--dry-run {dest}: the folder is inside the corpus root; pick another folder")
    if os.path.exists(dest) and os.listdir(dest) and not os.path.exists(os.path.join(dest, PLAN_FILE)):
        raise InputError(f"--dry-run {dest}: the folder exists and is not an earlier dry run (no {PLAN_FILE}); "
                         "pick an empty or new folder")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    for f in plan.files:
        target = os.path.join(dest, *f.path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if f.kind == "card":
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(plan.card)
            continue
        if src_root:
            try:
                os.link(os.path.join(src_root, *f.path.split("/")), target)
                continue
            except OSError:
                pass
        with plan.out.fs.open_input_stream(plan.out.path(f.path)) as src, open(target, "wb") as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
    groups = batches(plan.files, max_commits, files_per_commit)
    doc = {"repo_id": result.repo_id, "repo_type": REPO_TYPE, "revision": result.revision, "private": private,
           "source": plan.out.uri, "features": plan.feature_keys,
           "totals": {"files": result.files, "bytes": result.bytes},
           "operations": [{"op": "create_repo", "exist_ok": True, "private": private}]
           + ([{"op": "create_branch", "branch": result.revision}] if result.revision != "main" else [])
           + [{"op": "list_repo_tree", "note": "files already on the Hub with the same sha256/blob id are skipped"}]
           + [{"op": "preupload_lfs_files+create_commit", "part": i + 1,
               "commit_message": f"vlaflow publish: {_describe(g)} (part {i + 1}/{len(groups)})",
               "files": [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256, "git_oid": f.git_oid}
                         for f in g]} for i, g in enumerate(groups)]}
    with open(os.path.join(dest, PLAN_FILE), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=False)
        fh.write("\n")
    result.dry_run = dest
    result.commits = [{"message": op["commit_message"], "files": len(op["files"]), "oid": None}
                      for op in doc["operations"] if "part" in op]
    result.seconds = time.perf_counter() - t0
    return result
