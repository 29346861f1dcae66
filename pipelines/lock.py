"""One writer per output root: a second ``ingest``/``stats``/``features`` on the same root is refused, not interleaved.

Why: two drivers finishing into one root would rebuild the catalog from each other's half-written state. The lock
is ``meta/lock.json`` holding who owns it (host, pid, the process' start time, the command) and a heartbeat
refreshed by a daemon thread. A lock whose owner is gone is stale and taken over: on the same host when the pid is
dead (or reused by a process that started later), anywhere when the heartbeat is older than ``STALE_AFTER_S``.

On a local filesystem the lock is created with O_EXCL, so two starters cannot both win. Object stores have no
exclusive create through pyarrow: there the lock is written, then read back after ``SETTLE_S`` to see who won —
best effort, which covers the real case (a user starting the same job twice), not a deliberate race.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pyarrow.fs as pafs

from vlaflow.schemas import VlaflowError

from .layout import LOCK
from .storage import Output

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
SETTLE_S = 0.5


class LockedError(VlaflowError):
    """Another run holds the output root."""


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (Linux), so a reused pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _start_time(pid) in (None, start)


class RunLock:
    """``with RunLock(output_uri, "ingest bridge"):`` — held for the whole command, released on exit."""

    def __init__(self, uri: str, command: str):
        self.out = Output(uri)
        self.command = command
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _body(self) -> dict:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "command": self.command,
                "token": self.token, "heartbeat": time.time()}

    def _read(self) -> dict | None:
        try:
            return json.loads(self.out.read_bytes(LOCK))
        except (FileNotFoundError, json.JSONDecodeError, ValueError, OSError):
            return None

    def _stale(self, owner: dict) -> bool:
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            return not _alive(owner["pid"], owner.get("start"))
        return time.time() - float(owner.get("heartbeat", 0)) > STALE_AFTER_S

    def _create(self) -> bool:
        data = json.dumps(self._body(), sort_keys=True).encode()
        self.out.makedirs(os.path.dirname(LOCK))
        if isinstance(self.out.fs, pafs.LocalFileSystem):
            try:
                fd = os.open(self.out.path(LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.out.exists(LOCK):
            return False
        self.out.write_bytes(LOCK, data)
        time.sleep(SETTLE_S)
        return (self._read() or {}).get("token") == self.token

    def acquire(self) -> "RunLock":
        for _ in range(3):
            if self._create():
                self.held = True
                self._thread = threading.Thread(target=self._beat, name="vlaflow-lock", daemon=True)
                self._thread.start()
                return self
            owner = self._read()
            if owner is None:  # vanished or half written between our checks: look again
                time.sleep(0.05)
                continue
            if not self._stale(owner):
                since = time.strftime("%H:%M:%S", time.localtime(float(owner.get("heartbeat", 0))))
                raise LockedError(f"{self.out.uri} is in use by `{owner.get('command')}` (pid {owner.get('pid')} on "
                                  f"{owner.get('host')}, alive at {since}); wait for it to finish, or delete "
                                  f"{self.out.path(LOCK)} if that run is really gone")
            if (self._read() or {}).get("token") == owner.get("token"):
                self.out.fs.delete_file(self.out.path(LOCK))  # a dead owner's lock: take it over
        raise LockedError(f"{self.out.uri}: could not take {LOCK} (another run keeps taking it)")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if (self._read() or {}).get("token") != self.token:
                return  # someone judged us stale and took over; nothing of theirs is ours to touch
            self.out.write_bytes(LOCK, json.dumps(self._body(), sort_keys=True).encode())

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self._read() or {}).get("token") == self.token:
            self.out.fs.delete_file(self.out.path(LOCK))
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire() if not self.held else self

    def __exit__(self, *exc) -> None:
        self.release()
