"""An in-memory stand-in for ``huggingface_hub.HfApi`` that behaves like the Hub where publishing depends on it:
LFS files must be pre-uploaded before the commit that names them (their content is dropped from the operation,
as the real ``preupload_lfs_files`` does), commits are atomic, ``list_repo_tree`` answers real ``RepoFile`` /
``RepoFolder`` objects with the LFS sha256 or the git blob id, and errors can be injected on the Nth call."""
from __future__ import annotations

import hashlib
from collections import defaultdict

import httpx2
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile, RepoFolder

LFS_MIN_BYTES = 1024


def http_error(status: int, message: str = "", headers: dict | None = None, cls=HfHubHTTPError) -> HfHubHTTPError:
    req = httpx2.Request("POST", "https://huggingface.co/api/datasets/org/name/commit/main")
    resp = httpx2.Response(status, headers=headers or {}, request=req)
    return cls(message or f"{status} Client Error for url {req.url}", response=resp)


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {rev: {path: bytes}}}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content (the LFS store, shared by branches)
        self.calls: list[tuple[str, dict]] = []
        self.count: dict[str, int] = defaultdict(int)
        self.faults: dict[tuple[str, int], BaseException] = {}
        self.commits: list[dict] = []
        self.lfs_uploads = 0

    # -- test controls ----------------------------------------------------------------------------------
    def fail(self, call: str, nth: int, err: BaseException) -> None:
        """Raise ``err`` on the ``nth`` (1-based) call of ``call``."""
        self.faults[(call, nth)] = err

    def tree(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["branches"][revision])

    def _enter(self, name: str, **kw) -> None:
        self.count[name] += 1
        self.calls.append((name, kw))
        err = self.faults.pop((name, self.count[name]), None)
        if err is not None:
            raise err

    # -- the HfApi surface publish uses --------------------------------------------------------------------
    def create_repo(self, repo_id, *, repo_type=None, private=False, exist_ok=False, **kw):
        self._enter("create_repo", repo_id=repo_id, repo_type=repo_type, private=private)
        assert repo_type == "dataset"
        if repo_id not in self.repos:
            self.repos[repo_id] = {"private": private, "branches": {"main": {".gitattributes": b"*.parquet lfs\n"}}}
        elif not exist_ok:
            raise http_error(409, "repo exists")
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False, **kw):
        self._enter("create_branch", repo_id=repo_id, branch=branch)
        branches = self.repos[repo_id]["branches"]
        if branch not in branches:
            branches[branch] = dict(branches["main"])

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, expand=False, revision=None,
                       repo_type=None, **kw):
        self._enter("list_repo_tree", repo_id=repo_id, revision=revision, recursive=recursive)
        branches = self.repos[repo_id]["branches"]
        if (revision or "main") not in branches:
            raise http_error(404, "Invalid rev id", cls=RevisionNotFoundError)
        files = branches[revision or "main"]
        folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for d in folders:
            yield RepoFolder(path=d, oid=hashlib.sha1(d.encode()).hexdigest())
        for p, data in sorted(files.items()):
            oid = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            lfs = None
            if self._is_lfs(p, len(data)):
                lfs = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                oid = hashlib.sha1(b"pointer " + data[:16]).hexdigest()  # a pointer's blob id, not the content's
            yield RepoFile(path=p, size=len(data), oid=oid, lfs=lfs)

    @staticmethod
    def _is_lfs(path: str, size: int) -> bool:
        return size >= LFS_MIN_BYTES or path.endswith((".parquet", ".bin", ".mp4"))

    def preupload_lfs_files(self, repo_id, *, additions, repo_type=None, revision=None, **kw):
        additions = list(additions)
        self._enter("preupload_lfs_files", repo_id=repo_id, paths=[a.path_in_repo for a in additions])
        for op in additions:
            if op._is_uploaded or not self._is_lfs(op.path_in_repo, op.upload_info.size):
                continue
            with op.as_file() as f:
                data = f.read()
            sha = op.upload_info.sha256.hex()
            assert hashlib.sha256(data).hexdigest() == sha, op.path_in_repo
            if sha not in self.lfs:
                self.lfs[sha] = data
                self.lfs_uploads += 1
            op._upload_mode, op._is_uploaded = "lfs", True
            op.path_or_fileobj = b""  # what the real call does with free_memory=True

    def create_commit(self, repo_id, *, operations, commit_message, repo_type=None, revision=None, **kw):
        operations = list(operations)
        self._enter("create_commit", repo_id=repo_id, message=commit_message,
                    paths=[o.path_in_repo for o in operations])
        staged = {}
        for op in operations:
            if self._is_lfs(op.path_in_repo, op.upload_info.size):
                sha = op.upload_info.sha256.hex()
                if sha not in self.lfs:
                    raise http_error(400, f"LFS object {op.path_in_repo} was not uploaded before the commit")
                staged[op.path_in_repo] = self.lfs[sha]
            else:
                with op.as_file() as f:
                    staged[op.path_in_repo] = f.read()
        self.repos[repo_id]["branches"][revision or "main"].update(staged)  # atomic
        oid = hashlib.sha1(commit_message.encode() + str(len(self.commits)).encode()).hexdigest()
        self.commits.append({"message": commit_message, "paths": sorted(staged), "oid": oid})

        class Info(str):
            pass

        info = Info(f"https://huggingface.co/datasets/{repo_id}/commit/{oid}")
        info.oid = oid
        return info
