"""The output lock in process: one holder, stale owners taken over, a live remote owner refused, released on exit."""
from __future__ import annotations

import json
import socket
import time

import pytest

from vlaflow.pipelines.layout import LOCK
from vlaflow.pipelines.lock import STALE_AFTER_S, LockedError, RunLock


def _write(root, **owner) -> None:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / LOCK).write_text(json.dumps({"token": "theirs", "command": "vlaflow ingest elsewhere", **owner}))


def test_one_holder_at_a_time_and_released_on_exit(tmp_path):
    with RunLock(str(tmp_path), "vlaflow ingest a") as lock:
        body = json.loads((tmp_path / LOCK).read_text())
        assert body["token"] == lock.token and body["host"] == socket.gethostname()
        with pytest.raises(LockedError, match="in use by `vlaflow ingest a`"):
            RunLock(str(tmp_path), "vlaflow stats").acquire()  # same live process: still one writer
    assert not (tmp_path / LOCK).exists()
    with RunLock(str(tmp_path), "vlaflow stats"):  # free again
        pass


def test_dead_owner_on_this_host_is_taken_over(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write(tmp_path, host=socket.gethostname(), pid=int(dead.stdout), start=None, heartbeat=time.time())
    with RunLock(str(tmp_path), "vlaflow ingest b") as lock:
        assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.token


def test_remote_owner_is_judged_by_its_heartbeat(tmp_path):
    _write(tmp_path, host="another-node", pid=1, heartbeat=time.time())
    with pytest.raises(LockedError, match="pid 1 on another-node"):
        RunLock(str(tmp_path), "vlaflow ingest c").acquire()
    _write(tmp_path, host="another-node", pid=1, heartbeat=time.time() - STALE_AFTER_S - 1)
    with RunLock(str(tmp_path), "vlaflow ingest c"):
        pass


def test_a_lock_taken_over_is_not_released_by_its_old_owner(tmp_path):
    first = RunLock(str(tmp_path), "vlaflow ingest old").acquire()
    (tmp_path / LOCK).unlink()  # judged stale and taken by someone else
    second = RunLock(str(tmp_path), "vlaflow ingest new").acquire()
    first.release()
    assert json.loads((tmp_path / LOCK).read_text())["token"] == second.token
    second.release()
