#!/usr/bin/env python
"""Ingest benchmark: `vlaflow ingest` on an RLDS (Open-X bridge) dataset versus the anchors.

What it does, in one run and on the same files:

1. Builds a scaled copy of the bridge fixture (TFDS layout: features.json copied, dataset_info.json
   rewritten with the new `shardLengths`/`numBytes`, shards named
   `bridge_dataset-train.tfrecord-0000K-of-0000N`) under `--workdir`.
2. (a) runs `vlaflow ingest --converter openx_rlds --input <dir> --output <out>` as a subprocess and
   measures wall time and the peak memory of its whole process tree (psutil polling: Ray spawns
   workers), plus output bytes (files under <out>/data) / source bytes; optionally (`--rss-growth`,
   on by default) again on a 20x larger copy to see whether peak RSS stays flat.
   (b) TensorFlow: `tfds.builder_from_directory(dir).as_dataset(split="train")` iterated to the last
   element, once without image decoding and once with JPEG decoding (as Octo/OpenVLA's dlimp pipeline
   does), in the interpreter given by `--tf-python` (default /work/bench-envs/tf/bin/python).
   (c) LeRobot: `LeRobotDataset.create` / `add_frame` / `save_episode` (images mode) on the first
   `--lerobot-steps` steps, in the interpreter given by `--lerobot-python`
   (default /work/bench-envs/lerobot/bin/python).
3. Prints a table with the ratios the issue sets targets for, and optionally writes JSON.

An anchor whose interpreter is missing is skipped with the reason printed, so the script also works
as a smoke test on any machine that has the vlaflow venv. See benchmarks/README.md for the anchor
environments.

Source bytes are the bytes of the shard files on disk (TFRecord framing included); MB = 10**6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

DEFAULT_FIXTURE = Path("/work/shared/fixtures/rlds/octo_bridge_debug/bridge_dataset/1.0.0")
DEFAULT_TF_PYTHON = Path("/work/bench-envs/tf/bin/python")
DEFAULT_LEROBOT_PYTHON = Path("/work/bench-envs/lerobot/bin/python")

TARGETS = {
    "vlaflow_over_tf_nodecode": (">=", 0.5),
    "vlaflow_over_tf_nodecode_20x": (">=", 0.5),
    "vlaflow_marginal_over_tf_nodecode_20x": (">=", 0.5),
    "vlaflow_over_lerobot": (">=", 100.0),
    "vlaflow_marginal_over_lerobot": (">=", 100.0),
    "output_over_source_bytes": ("<=", 1.05),
    "rss_growth_20x": ("<=", 1.2),
    "pss_growth_20x": ("<=", 1.2),
}

# --------------------------------------------------------------------------------------------------
# TFRecord framing and the scaled dataset
# --------------------------------------------------------------------------------------------------

_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    import crc32c

    return crc32c.crc32c(data)


def masked_crc32c(data: bytes) -> int:
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """`u64 len LE | u32 masked_crc32c(len bytes) | payload | u32 masked_crc32c(payload)`."""
    header = struct.pack("<Q", len(payload))
    return b"".join(
        (
            header,
            struct.pack("<I", masked_crc32c(header)),
            payload,
            struct.pack("<I", masked_crc32c(payload)),
        )
    )


def read_tfrecord(path: Path, verify: bool = True) -> list[bytes]:
    """Return the payloads of a TFRecord file, checking both CRCs when `verify`."""
    data = path.read_bytes()
    out: list[bytes] = []
    off = 0
    while off < len(data):
        if off + 12 > len(data):
            raise ValueError(f"{path}: truncated record header at byte {off}")
        header = data[off : off + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[off + 8 : off + 12])
        end = off + 12 + length + 4
        if end > len(data):
            raise ValueError(f"{path}: truncated record at byte {off}")
        payload = data[off + 12 : off + 12 + length]
        if verify:
            (pcrc,) = struct.unpack("<I", data[off + 12 + length : end])
            if hcrc != masked_crc32c(header) or pcrc != masked_crc32c(payload):
                raise ValueError(f"{path}: CRC mismatch in record at byte {off}")
        out.append(payload)
        off = end
    return out


# --- minimal protobuf handling, only to make each copied episode's JPEGs byte-unique --------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf: bytes):
    """Yield (field_number, wire_type, raw_field_bytes, value) for a serialized message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        fnum, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _read_varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        elif wt == 2:
            n, pos = _read_varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield fnum, wt, buf[start:pos], val


def _ld(fnum: int, payload: bytes) -> bytes:
    return _varint((fnum << 3) | 2) + _varint(len(payload)) + payload


# Slot placed in a JPEG COM segment; filled per copy so no two copies share image bytes.
_SLOT = b"\x00" * 16
_COM_PREFIX = b"vlaflow-bench:"


def _jpeg_with_slot(jpeg: bytes) -> bytes:
    """Insert a COM segment (prefix + 16-byte slot) after SOI/APP0: still a valid JPEG."""
    if jpeg[:2] != b"\xff\xd8":
        return jpeg  # not a JPEG: leave as is (no slot)
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":  # keep JFIF APP0 first, as the JFIF spec asks
        (seglen,) = struct.unpack(">H", jpeg[4:6])
        pos = 4 + seglen
    body = _COM_PREFIX + _SLOT
    com = b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:pos] + com + jpeg[pos:]


def _rewrite_example(example: bytes) -> bytes:
    """tf.train.Example with every `*image*` bytes feature value given a COM slot."""
    out = []
    for fnum, wt, raw, val in _fields(example):
        if fnum != 1 or wt != 2:  # Example.features
            out.append(raw)
            continue
        feats = []
        for f2, w2, raw2, entry in _fields(val):  # Features.feature map entries
            if f2 != 1 or w2 != 2:
                feats.append(raw2)
                continue
            key = b""
            value = None
            for f3, _w3, _raw3, v3 in _fields(entry):
                if f3 == 1:
                    key = bytes(v3)
                elif f3 == 2:
                    value = bytes(v3)
            if value is None or b"image" not in key:
                feats.append(raw2)
                continue
            new_feature = []
            for f4, w4, raw4, v4 in _fields(value):  # Feature oneof
                if f4 == 1 and w4 == 2:  # bytes_list
                    vals = [_ld(1, _jpeg_with_slot(bytes(v5))) for f5, _w5, _r5, v5 in _fields(v4) if f5 == 1]
                    new_feature.append(_ld(1, b"".join(vals)))
                else:
                    new_feature.append(raw4)
            feats.append(_ld(1, _ld(1, key) + _ld(2, b"".join(new_feature))))
        out.append(_ld(1, b"".join(feats)))
    return b"".join(out)


class _Template:
    """A payload with fixed-size slots; `render(copy)` fills each slot with a unique tag."""

    def __init__(self, payload: bytes, unique: bool):
        self.payload = _rewrite_example(payload) if unique else payload
        self.slots = []
        if unique:
            marker = _COM_PREFIX + _SLOT
            start = 0
            while True:
                i = self.payload.find(marker, start)
                if i < 0:
                    break
                self.slots.append(i + len(_COM_PREFIX))
                start = i + len(marker)

    def render(self, copy_index: int, record_index: int) -> bytes:
        if not self.slots:
            return self.payload
        buf = bytearray(self.payload)
        for k, off in enumerate(self.slots):
            buf[off : off + 16] = struct.pack("<IIQ", copy_index, record_index, k)
        return bytes(buf)


def build_scaled_dataset(
    fixture: Path,
    dest: Path,
    copies: int,
    shards: int,
    unique: bool = True,
    split: str = "train",
) -> dict:
    """Write `copies` repetitions of the fixture's `split` episodes into `shards` shards at `dest`.

    Returns {"dir", "episodes", "steps", "source_bytes", "num_bytes", "shard_lengths",
    "record_bytes"} where `record_bytes[i]` is the framed size of episode i (in file order).
    """
    info = json.loads((fixture / "dataset_info.json").read_text())
    name = info.get("name", "bridge_dataset")
    split_info = next(s for s in info["splits"] if s["name"] == split)
    src_shards = sorted(fixture.glob(f"{name}-{split}.tfrecord-*"))
    if not src_shards:
        raise FileNotFoundError(f"no {split} shards in {fixture}")
    payloads = [p for f in src_shards for p in read_tfrecord(f)]
    steps_per_record = _steps_per_record(fixture, payloads)
    templates = [_Template(p, unique) for p in payloads]

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(fixture / "features.json", dest / "features.json")

    total = copies * len(payloads)
    shards = max(1, min(shards, total))
    bounds = [round(k * total / shards) for k in range(shards + 1)]
    shard_lengths, record_bytes = [], []
    num_bytes = 0
    source_bytes = 0
    steps = 0
    idx = 0
    for k in range(shards):
        path = dest / f"{name}-{split}.tfrecord-{k:05d}-of-{shards:05d}"
        with open(path, "wb") as fh:
            for _ in range(bounds[k], bounds[k + 1]):
                copy_index, rec = divmod(idx, len(payloads))
                payload = templates[rec].render(copy_index, rec)
                framed = frame_record(payload)
                fh.write(framed)
                num_bytes += len(payload)
                record_bytes.append(len(framed))
                steps += steps_per_record[rec]
                idx += 1
        shard_lengths.append(bounds[k + 1] - bounds[k])
        source_bytes += path.stat().st_size

    new_split = dict(split_info)
    new_split["name"] = split
    new_split["shardLengths"] = [str(n) for n in shard_lengths]
    new_split["numBytes"] = str(num_bytes)
    info["splits"] = [new_split]
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return {
        "dir": str(dest),
        "episodes": total,
        "steps": steps,
        "source_bytes": source_bytes,
        "num_bytes": num_bytes,
        "shard_lengths": shard_lengths,
        "record_bytes": record_bytes,
        "unique_images": unique,
    }


def _features(fixture: Path):
    from tensorflow_datasets.core.features import FeaturesDict

    return FeaturesDict.from_config(str(fixture))


def _parser(fixture: Path):
    from tensorflow_datasets.core import example_parser

    return example_parser.ExampleParserNp(_features(fixture).get_serialized_info())


def _steps_per_record(fixture: Path, payloads: list[bytes]) -> list[int]:
    parser = _parser(fixture)
    out = []
    for p in payloads:
        ex = parser.parse_example(p)
        out.append(len(ex["steps"]["is_first"]))
    return out


# --------------------------------------------------------------------------------------------------
# Process-tree measurement
# --------------------------------------------------------------------------------------------------


class TreeSampler:
    """Polls a process and all its descendants; keeps the peak of the summed RSS (and PSS)."""

    def __init__(self, pid: int, interval: float = 0.05, pss_every: int = 10):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.per_proc: dict[int, list] = {}  # pid -> [peak rss, label]
        self.seen: dict[int, psutil.Process] = {pid: self.root}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _procs(self):
        psutil = self._psutil
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            procs = []
        for p in procs:
            self.seen.setdefault(p.pid, p)
        return procs

    def _run(self):
        psutil = self._psutil
        n = 0
        while not self._stop.is_set():
            procs = self._procs()
            rss = pss = 0
            for p in procs:
                try:
                    if self.pss_every and n % self.pss_every == 0:
                        mi = p.memory_full_info()
                        rss += mi.rss
                        pss += getattr(mi, "pss", mi.rss)
                    else:
                        mi = p.memory_info()
                        rss += mi.rss
                    entry = self.per_proc.get(p.pid)
                    if entry is None:
                        self.per_proc[p.pid] = [mi.rss, _label(p)]
                    elif mi.rss > entry[0]:
                        entry[0] = mi.rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            n += 1
            self._stop.wait(self.interval)

    def leftovers(self) -> list:
        alive = []
        for pid, p in self.seen.items():
            try:
                if p.is_running() and p.status() != self._psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except self._psutil.Error:
                pass
        return alive


def run_measured(cmd: list[str], log_dir: Path, tag: str, timeout: float, env: dict | None = None) -> dict:
    """Run `cmd`, measuring wall time and peak RSS/PSS of its process tree."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{tag}.stdout", log_dir / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        sampler = TreeSampler(proc.pid).start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _terminate(sampler.leftovers())
            rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
    # Processes of the tree still alive a moment after the parent exited (e.g. Ray daemons).
    deadline = time.time() + 10
    left = sampler.leftovers()
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = sampler.leftovers()
    leftover = [f"{p.pid}:{_pname(p)}" for p in left]
    if left:
        _terminate(left)
    return {
        "cmd": cmd,
        "rc": rc,
        "timed_out": timed_out,
        "wall_s": wall,
        "peak_rss_bytes": sampler.peak_rss,
        "peak_pss_bytes": sampler.peak_pss,
        "peak_processes": sampler.peak_procs,
        "per_process_peak_rss": sorted(
            ({"pid": pid, "label": lab, "peak_rss_bytes": r} for pid, (r, lab) in sampler.per_proc.items()),
            key=lambda e: -e["peak_rss_bytes"],
        ),
        "leftover_processes": leftover,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
        "stdout_path": str(out_path),
        "stderr_path": str(err_path),
    }


def _label(p) -> str:
    """Short name for a process: Ray sets its workers' titles (ray::IDLE, ray::ReadFiles, ...)."""
    try:
        cmd = p.cmdline()
        name = p.name()
        if cmd and cmd[0].startswith("ray::"):
            return cmd[0][:40]
        for part in cmd[:3]:
            base = os.path.basename(part)
            if base and not base.startswith("python"):
                return f"{name}:{base[:30]}"
        return name
    except Exception:
        return "?"


def _pname(p) -> str:
    try:
        return p.name()
    except Exception:
        return "?"


def _terminate(procs: list) -> None:
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _top(res: dict, n: int = 5) -> str:
    top = res.get("per_process_peak_rss") or []
    return ", ".join(f"{e['label']} {e['peak_rss_bytes'] / 1e6:.0f}" for e in top[:n])


def _tail(text: str, n: int = 15) -> str:
    lines = text.strip().splitlines()
    return "\n".join("      " + ln for ln in lines[-n:])


# --------------------------------------------------------------------------------------------------
# (a) vlaflow
# --------------------------------------------------------------------------------------------------


def find_vlaflow(explicit: str | None) -> Path | None:
    if explicit:
        p = Path(explicit)
        return p if p.exists() else None
    p = Path(sys.executable).parent / "vlaflow"
    if p.exists():
        return p
    found = shutil.which("vlaflow")
    return Path(found) if found else None


def run_vlaflow(exe: Path, ds: dict, out: Path, logs: Path, tag: str, timeout: float, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    # Always the Ray path (unless --vlaflow-arg says otherwise): `--executor auto` would run a small 1x input in
    # process and its larger copy on Ray, and the two runs would no longer be comparable.
    executor = [] if "--executor" in extra else ["--executor", "ray"]
    cmd = [str(exe), "ingest", "--converter", "openx_rlds", "--input", ds["dir"], "--output", str(out), *executor,
           *extra]
    r = run_measured(cmd, logs, tag, timeout)
    res = {
        "rc": r["rc"],
        "timed_out": r["timed_out"],
        "wall_s": r["wall_s"],
        "steps": ds["steps"],
        "episodes": ds["episodes"],
        "source_bytes": ds["source_bytes"],
        "peak_rss_bytes": r["peak_rss_bytes"],
        "peak_pss_bytes": r["peak_pss_bytes"],
        "peak_processes": r["peak_processes"],
        "per_process_peak_rss": r["per_process_peak_rss"],
        "leftover_processes": r["leftover_processes"],
        "stdout_path": r["stdout_path"],
        "stderr_path": r["stderr_path"],
    }
    if r["rc"] != 0 or r["timed_out"]:
        res["error"] = f"exit {r['rc']}{' (timed out)' if r['timed_out'] else ''}\n{_tail(r['stderr'] or r['stdout'])}"
        return res
    res["steps_per_s"] = ds["steps"] / r["wall_s"]
    res["mb_per_s"] = ds["source_bytes"] / 1e6 / r["wall_s"]
    data_dir = out / "data"
    res["output_data_bytes"] = dir_bytes(data_dir) if data_dir.exists() else 0
    res["output_total_bytes"] = dir_bytes(out)
    res["output_over_source_bytes"] = res["output_data_bytes"] / ds["source_bytes"]
    if not data_dir.exists():
        res["warning"] = f"{data_dir} does not exist"
    return res


# --------------------------------------------------------------------------------------------------
# (b) TensorFlow / TFDS
# --------------------------------------------------------------------------------------------------

TF_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    t_import = time.perf_counter()
    import tensorflow as tf
    import tensorflow_datasets as tfds
    t_import = time.perf_counter() - t_import
    data_dir, mode = sys.argv[1], sys.argv[2]

    t0 = time.perf_counter()
    builder = tfds.builder_from_directory(data_dir)
    # Octo / OpenVLA (dlimp `DLataset.from_rlds`): the `steps` sequence is read as one tensor dict per
    # episode without decoding its features; images stay JPEG strings.
    ds = builder.as_dataset(split="train", decoders={"steps": tfds.decode.SkipDecoding()})
    image_keys = sorted(k for k, v in builder.info.features["steps"]["observation"].items()
                        if isinstance(v, tfds.features.Image))
    if mode == "decode":
        # ... then JPEG-decode every frame in a parallel map, as Octo's decode_and_resize does
        # (the 64x64 fixture needs no resize).
        def decode(ep):
            obs = ep["steps"]["observation"]
            for k in image_keys:
                obs[k] = tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=3), obs[k],
                                   fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
            return ep
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    episodes = steps = 0
    t_first = None
    for ep in ds:
        if t_first is None:
            t_first = time.perf_counter() - t0
        episodes += 1
        steps += int(ep["steps"]["is_first"].shape[0])
    wall = time.perf_counter() - t0
    last = ep["steps"]["observation"][image_keys[0]]
    print(json.dumps({"mode": mode, "episodes": episodes, "steps": steps, "wall_s": wall,
                      "first_element_s": t_first, "import_s": t_import,
                      "image_dtype": last.dtype.name, "image_shape": list(last.shape),
                      "tf": tf.__version__, "tfds": tfds.__version__}))
    '''
)


def run_tf(python: Path, ds: dict, work: Path, logs: Path, timeout: float,
           modes=("nodecode", "decode"), tag: str = "tf") -> dict:
    script = work / "tf_anchor.py"
    script.write_text(TF_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    res = {}
    for mode in modes:
        r = run_measured([str(python), str(script), ds["dir"], mode], logs, f"{tag}_{mode}", timeout, env)
        entry = {"rc": r["rc"], "peak_rss_bytes": r["peak_rss_bytes"], "process_wall_s": r["wall_s"]}
        payload = _last_json(r["stdout"])
        if r["rc"] != 0 or payload is None:
            entry["error"] = f"exit {r['rc']}\n{_tail(r['stderr'] or r['stdout'])}"
        else:
            entry.update(payload)
            entry["steps_per_s"] = payload["steps"] / payload["wall_s"]
            entry["mb_per_s"] = ds["source_bytes"] / 1e6 / payload["wall_s"]
            if payload["steps"] != ds["steps"]:
                entry["warning"] = f"TF saw {payload['steps']} steps, expected {ds['steps']}"
        res[mode] = entry
    return res


def _last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


# --------------------------------------------------------------------------------------------------
# (c) LeRobot
# --------------------------------------------------------------------------------------------------

LEROBOT_SCRIPT = textwrap.dedent(
    r'''
    import io, json, os, pickle, sys, time
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    # torchvision's wheel from PyPI is a CUDA build whose C++ ops (`torchvision::nms` & co.) do not
    # load beside a CPU torch, and `import torchvision` then fails while registering fake kernels for
    # them. LeRobot's dataset code only uses pure-Python transforms, so stand-in op definitions (no
    # kernels: calling one raises) are enough to import it.
    stand_ins = []
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        for m in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[m]
        SCHEMAS = [
            "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
            "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
            "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, int rois_zero_point, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
            "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
            "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
            "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
            "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
            "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
            "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
            "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
            "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
        ]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in SCHEMAS:
            name = schema.split("(", 1)[0]
            try:
                lib.define(schema)
                stand_ins.append(name)
            except RuntimeError:
                pass  # already defined
        print(f"NOTE: import torchvision failed ({str(exc).splitlines()[0]}); registered stand-in "
              f"torch.library ops (no kernels) for: {', '.join(stand_ins)}", file=sys.stderr, flush=True)
        import torchvision  # noqa: F401
    import numpy as np
    import PIL.Image
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    episodes_path, root, fps, writer_threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(episodes_path, "rb") as fh:
        episodes = pickle.load(fh)
    image_keys = episodes["image_keys"]
    h, w = episodes["image_hw"]
    features = {f"observation.images.{k}": {"dtype": "image", "shape": (h, w, 3),
                                            "names": ["height", "width", "channels"]} for k in image_keys}
    features["observation.state"] = {"dtype": "float32", "shape": (episodes["state_dim"],), "names": None}
    features["action"] = {"dtype": "float32", "shape": (episodes["action_dim"],), "names": None}

    t0 = time.perf_counter()
    ds = LeRobotDataset.create(repo_id="bench/bridge_debug", fps=fps, features=features, root=root,
                               robot_type="widowx", use_videos=False, image_writer_threads=writer_threads)
    steps = 0
    for ep in episodes["episodes"]:
        n = len(ep["state"])
        for i in range(n):
            frame = {f"observation.images.{k}": np.asarray(PIL.Image.open(io.BytesIO(ep[k][i])).convert("RGB"))
                     for k in image_keys}
            frame["observation.state"] = ep["state"][i]
            frame["action"] = ep["action"][i]
            frame["task"] = ep["task"][i]
            ds.add_frame(frame)
        ds.save_episode()
        steps += n
    ds.finalize()
    ds.stop_image_writer()
    wall = time.perf_counter() - t0
    print(json.dumps({"episodes": len(episodes["episodes"]), "steps": steps, "wall_s": wall,
                      "stand_in_ops": stand_ins, "lerobot": getattr(lerobot, "__version__", "?"),
                      "torch": torch.__version__, "torchvision": torchvision.__version__}))
    '''
)


def prepare_lerobot_episodes(fixture: Path, ds: dict, max_steps: int, dest: Path) -> dict:
    """Parse the first episodes of the scaled dataset (NumPy TFRecord parse, no TensorFlow) until
    `max_steps` steps, and pickle what `add_frame` needs (JPEG bytes stay encoded: the LeRobot run
    decodes them with PIL inside its timed loop)."""
    import numpy as np

    parser = _parser(fixture)
    feats = _features(fixture)
    obs_feats = feats["steps"]["observation"]
    image_keys = sorted(k for k in obs_feats.keys() if type(obs_feats[k]).__name__ == "Image")
    h, w = obs_feats[image_keys[0]].shape[:2]
    name = json.loads((Path(ds["dir"]) / "dataset_info.json").read_text()).get("name", "bridge_dataset")
    shards = sorted(Path(ds["dir"]).glob(f"{name}-train.tfrecord-*"))
    episodes, steps, src_bytes = [], 0, 0
    for shard in shards:
        for payload in read_tfrecord(shard, verify=False):
            if steps >= max_steps:
                break
            ex = parser.parse_example(payload)
            st = ex["steps"]
            ep = {k: list(st["observation"][k]) for k in image_keys}
            ep["state"] = np.asarray(st["observation"]["state"], dtype=np.float32)
            ep["action"] = np.asarray(st["action"], dtype=np.float32)
            ep["task"] = [t.decode() if isinstance(t, bytes) else str(t) for t in st["language_instruction"]]
            episodes.append(ep)
            steps += len(ep["state"])
            src_bytes += len(payload) + 16
        if steps >= max_steps:
            break
    with open(dest, "wb") as fh:
        pickle.dump(
            {
                "episodes": episodes,
                "image_keys": image_keys,
                "image_hw": (int(h), int(w)),
                "state_dim": int(episodes[0]["state"].shape[1]),
                "action_dim": int(episodes[0]["action"].shape[1]),
            },
            fh,
        )
    return {"episodes": len(episodes), "steps": steps, "source_bytes": src_bytes}


def run_lerobot(python: Path, fixture: Path, ds: dict, work: Path, logs: Path, args) -> dict:
    script = work / "lerobot_anchor.py"
    script.write_text(LEROBOT_SCRIPT)
    subset = prepare_lerobot_episodes(fixture, ds, args.lerobot_steps, work / "lerobot_episodes.pkl")
    root = work / "lerobot_out"
    if root.exists():
        shutil.rmtree(root)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
               HF_HOME=str(work / "hf_home"))
    cmd = [str(python), str(script), str(work / "lerobot_episodes.pkl"), str(root), str(args.fps),
           str(args.lerobot_image_writer_threads)]
    r = run_measured(cmd, logs, "lerobot", args.timeout, env)
    res = {"rc": r["rc"], "peak_rss_bytes": r["peak_rss_bytes"], "process_wall_s": r["wall_s"],
           "subset_steps": subset["steps"], "subset_episodes": subset["episodes"],
           "subset_source_bytes": subset["source_bytes"]}
    notes = [ln for ln in r["stderr"].splitlines() if ln.startswith("NOTE:")]
    if notes:
        res["notes"] = notes
        for ln in notes:
            print("    " + ln)
    payload = _last_json(r["stdout"])
    if r["rc"] != 0 or payload is None:
        res["error"] = f"exit {r['rc']}\n{_tail(r['stderr'] or r['stdout'])}"
        return res
    res.update(payload)
    res["steps_per_s"] = payload["steps"] / payload["wall_s"]
    res["mb_per_s"] = subset["source_bytes"] / 1e6 / payload["wall_s"]
    res["output_bytes"] = dir_bytes(root)
    res["output_over_source_bytes"] = res["output_bytes"] / subset["source_bytes"]
    return res


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _fmt(x, spec=".1f"):
    if x is None:
        return "-"
    return format(x, spec)


def _mb(b):
    return None if b is None else b / 1e6


def compute_ratios(results: dict) -> dict:
    v = results.get("vlaflow") or {}
    tf = (results.get("tf") or {}).get("nodecode") or {}
    lr = results.get("lerobot") or {}
    g = results.get("vlaflow_growth") or {}
    ratios = {}

    def ok(key, val):
        if val is None:
            return None
        op, tgt = TARGETS[key]
        return val >= tgt if op == ">=" else val <= tgt

    vs = v.get("steps_per_s")
    r = vs / tf["steps_per_s"] if vs and tf.get("steps_per_s") else None
    ratios["vlaflow_over_tf_nodecode"] = {"value": r, "pass": ok("vlaflow_over_tf_nodecode", r)}
    gtf = (results.get("tf_growth") or {}).get("nodecode") or {}
    gs = g.get("steps_per_s")
    r = gs / gtf["steps_per_s"] if gs and gtf.get("steps_per_s") else None
    ratios["vlaflow_over_tf_nodecode_20x"] = {"value": r, "pass": ok("vlaflow_over_tf_nodecode", r)}
    ms = g.get("marginal_steps_per_s")
    r = ms / gtf["steps_per_s"] if ms and gtf.get("steps_per_s") else None
    ratios["vlaflow_marginal_over_tf_nodecode_20x"] = {"value": r, "pass": ok("vlaflow_over_tf_nodecode", r)}
    r = vs / lr["steps_per_s"] if vs and lr.get("steps_per_s") else None
    ratios["vlaflow_over_lerobot"] = {"value": r, "pass": ok("vlaflow_over_lerobot", r)}
    # Like for like: LeRobot's rate is timed after its interpreter start and parse, so compare it
    # with vlaflow's rate once start-up (interpreter, Ray) is removed.
    r = ms / lr["steps_per_s"] if ms and lr.get("steps_per_s") else None
    ratios["vlaflow_marginal_over_lerobot"] = {"value": r, "pass": ok("vlaflow_over_lerobot", r)}
    r = v.get("output_over_source_bytes")
    ratios["output_over_source_bytes"] = {"value": r, "pass": ok("output_over_source_bytes", r)}
    r = g.get("rss_growth")
    ratios["rss_growth_20x"] = {"value": r, "pass": ok("rss_growth_20x", r)}
    r = g.get("pss_growth")
    ratios["pss_growth_20x"] = {"value": r, "pass": ok("rss_growth_20x", r)}
    return ratios


def print_report(results: dict) -> None:
    ds = results["dataset"]
    print()
    print(f"Dataset: {ds['episodes']} episodes, {ds['steps']} steps, {ds['source_bytes'] / 1e6:.1f} MB "
          f"in {len(ds['shard_lengths'])} shards ({ds['dir']})")
    rows = []
    v = results.get("vlaflow")
    if v:
        if v.get("steps_per_s"):
            rows.append(("vlaflow ingest (wall, incl. startup)", v["steps_per_s"], v["mb_per_s"],
                         _mb(v["peak_rss_bytes"]),
                         f"out/src bytes {v['output_over_source_bytes']:.3f}; PSS {_mb(v['peak_pss_bytes']):.0f} MB, "
                         f"{v['peak_processes']} procs"))
        else:
            rows.append(("vlaflow ingest", None, None, _mb(v.get("peak_rss_bytes")), "FAILED"))
    g = results.get("vlaflow_growth")
    if g and g.get("steps_per_s"):
        rows.append((f"vlaflow ingest {g['factor']}x (wall)", g["steps_per_s"], g["mb_per_s"],
                     _mb(g["peak_rss_bytes"]),
                     f"out/src bytes {g['output_over_source_bytes']:.3f}; PSS {_mb(g['peak_pss_bytes']):.0f} MB, "
                     f"{g['peak_processes']} procs"))
        if g.get("marginal_steps_per_s"):
            rows.append((f"vlaflow marginal (1x->{g['factor']}x)", g["marginal_steps_per_s"],
                         g["marginal_mb_per_s"], None, "startup cost removed"))
    gf = results.get("growth_factor", 20)
    for key, mode, label in (("tf", "nodecode", "TF/TFDS no decode"), ("tf", "decode", "TF/TFDS + JPEG decode"),
                             ("tf_growth", "nodecode", f"TF/TFDS no decode {gf}x")):
        e = (results.get(key) or {}).get(mode)
        if e:
            if e.get("steps_per_s"):
                rows.append((label, e["steps_per_s"], e["mb_per_s"], _mb(e["peak_rss_bytes"]),
                             f"excl. TF import {e['import_s']:.1f}s"))
            else:
                rows.append((label, None, None, None, "FAILED"))
    lr = results.get("lerobot")
    if lr:
        if lr.get("steps_per_s"):
            rows.append((f"LeRobot images ({lr['steps']} steps)", lr["steps_per_s"], lr["mb_per_s"],
                         _mb(lr["peak_rss_bytes"]), f"out/src bytes {lr['output_over_source_bytes']:.2f}"))
        else:
            rows.append(("LeRobot images", None, None, None, "FAILED"))
    print()
    print(f"{'run':40s} {'steps/s':>10s} {'MB/s':>8s} {'peak RSS MB':>12s}  note")
    print("-" * 96)
    for name, sps, mbs, rss, note in rows:
        print(f"{name:40s} {_fmt(sps):>10s} {_fmt(mbs):>8s} {_fmt(rss, '.0f'):>12s}  {note}")
    print()
    print(f"{'ratio':40s} {'value':>10s} {'target':>10s}  result")
    print("-" * 72)
    labels = {
        "vlaflow_over_tf_nodecode": "vlaflow / TF-no-decode steps/s (1x)",
        "vlaflow_over_tf_nodecode_20x": "vlaflow / TF-no-decode steps/s (20x)",
        "vlaflow_marginal_over_tf_nodecode_20x": "vlaflow marginal / TF-no-decode (20x)",
        "vlaflow_over_lerobot": "vlaflow (wall, 1x) / LeRobot steps/s",
        "vlaflow_marginal_over_lerobot": "vlaflow marginal / LeRobot steps/s",
        "output_over_source_bytes": "vlaflow output / source bytes",
        "rss_growth_20x": "vlaflow peak RSS 20x / 1x (tree sum)",
        "pss_growth_20x": "vlaflow peak PSS 20x / 1x (tree sum)",
    }
    if gf != 20:
        labels = {k: lab.replace("20x", f"{gf}x") for k, lab in labels.items()}
    for key, r in results["ratios"].items():
        op, tgt = TARGETS[key]
        val = r["value"]
        res = "skipped" if val is None else ("PASS" if r["pass"] else "FAIL")
        print(f"{labels[key]:40s} {_fmt(val, '.3f'):>10s} {op + format(tgt, 'g'):>10s}  {res}")
    for name, reason in results.get("skipped", {}).items():
        print(f"  skipped {name}: {reason}")
    for name, msg in results.get("errors", {}).items():
        print(f"  error in {name}: {msg}")


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="TFDS version dir of the fixture")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build datasets (default: a tempdir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (a default tempdir is removed)")
    ap.add_argument("--scale", type=int, default=20,
                    help="copies of the fixture's train episodes in the 1x dataset (default 20 = 5,000 steps)")
    ap.add_argument("--shards", type=int, default=8, help="shards of the 1x dataset (default 8)")
    ap.add_argument("--verbatim", action="store_true",
                    help="copy records verbatim (default: give each copy's JPEGs a unique COM tag, so the "
                         "output/source byte ratio cannot profit from duplicate images)")
    ap.add_argument("--rss-growth", action=argparse.BooleanOptionalAction, default=True,
                    help="also ingest a --growth-factor times larger copy and compare peak RSS (default on)")
    ap.add_argument("--growth-factor", type=int, default=20)
    ap.add_argument("--growth-budget-s", type=float, default=900,
                    help="skip the growth run when the 1x throughput predicts it takes longer than this")
    ap.add_argument("--vlaflow", default=None, help="vlaflow executable (default: next to sys.executable)")
    ap.add_argument("--vlaflow-arg", action="append", default=[], help="extra argument for `vlaflow ingest`")
    ap.add_argument("--tf-python", type=Path, default=DEFAULT_TF_PYTHON)
    ap.add_argument("--lerobot-python", type=Path, default=DEFAULT_LEROBOT_PYTHON)
    ap.add_argument("--lerobot-steps", type=int, default=500,
                    help="LeRobot converts only the first episodes up to this many steps (default 500)")
    ap.add_argument("--lerobot-image-writer-threads", type=int, default=4)
    ap.add_argument("--fps", type=int, default=5, help="fps given to LeRobot (bridge is 5 Hz)")
    ap.add_argument("--skip", default="", help="comma list of runs to skip: vlaflow,tf,lerobot")
    ap.add_argument("--timeout", type=float, default=1800, help="per-run timeout in seconds")
    ap.add_argument("--json", dest="json_path", default=None, help="write results as JSON here ('-' = stdout)")
    args = ap.parse_args(argv)

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    own_tmp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="vlaflow-bench-")) if own_tmp else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    results: dict = {"skipped": {}, "errors": {}, "workdir": str(work), "python": sys.executable,
                     "growth_factor": args.growth_factor}
    try:
        t = time.perf_counter()
        ds = build_scaled_dataset(args.fixture, work / "rlds_1x" / "bridge_dataset" / "1.0.0",
                                  args.scale, args.shards, unique=not args.verbatim)
        print(f"built 1x dataset: {ds['episodes']} episodes / {ds['steps']} steps / "
              f"{ds['source_bytes'] / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s -> {ds['dir']}", flush=True)
        results["dataset"] = {k: v for k, v in ds.items() if k != "record_bytes"}

        # (a) vlaflow
        exe = find_vlaflow(args.vlaflow)
        if "vlaflow" in skip:
            results["skipped"]["vlaflow"] = "--skip"
        elif exe is None:
            results["skipped"]["vlaflow"] = (f"{args.vlaflow} not found" if args.vlaflow else
                                             f"no vlaflow executable next to {sys.executable} or on PATH")
        else:
            print(f"[vlaflow] {exe} ingest ... ({ds['steps']} steps)", flush=True)
            v = run_vlaflow(exe, ds, work / "vlaflow_out_1x", logs, "vlaflow_1x", args.timeout, args.vlaflow_arg)
            results["vlaflow"] = v
            if "error" in v:
                results["errors"]["vlaflow"] = v["error"]
                print(f"  FAILED: {v['error']}", flush=True)
            else:
                print(f"  {v['wall_s']:.1f}s, {v['steps_per_s']:.0f} steps/s, peak RSS "
                      f"{v['peak_rss_bytes'] / 1e6:.0f} MB, out/src {v['output_over_source_bytes']:.3f}", flush=True)
                print(f"  largest processes (peak RSS MB): {_top(v)}", flush=True)
                if v["leftover_processes"]:
                    print(f"  note: processes left running after exit (terminated): {v['leftover_processes']}")

        # (b) TensorFlow
        if "tf" in skip:
            results["skipped"]["tf"] = "--skip"
        elif not args.tf_python.exists():
            results["skipped"]["tf"] = f"{args.tf_python} not found (see benchmarks/README.md)"
        else:
            print(f"[tf] {args.tf_python} tfds.builder_from_directory(...).as_dataset ...", flush=True)
            tf = run_tf(args.tf_python, ds, work, logs, args.timeout)
            results["tf"] = tf
            for mode, e in tf.items():
                if "error" in e:
                    results["errors"][f"tf_{mode}"] = e["error"]
                    print(f"  {mode}: FAILED: {e['error']}", flush=True)
                else:
                    print(f"  {mode}: {e['wall_s']:.1f}s, {e['steps_per_s']:.0f} steps/s "
                          f"(TF {e['tf']}, TFDS {e['tfds']})", flush=True)

        # (c) LeRobot
        if "lerobot" in skip:
            results["skipped"]["lerobot"] = "--skip"
        elif not args.lerobot_python.exists():
            results["skipped"]["lerobot"] = f"{args.lerobot_python} not found (see benchmarks/README.md)"
        else:
            print(f"[lerobot] {args.lerobot_python} LeRobotDataset.create/add_frame/save_episode on the "
                  f"first {args.lerobot_steps} steps (a subset: LeRobot is slow) ...", flush=True)
            lr = run_lerobot(args.lerobot_python, args.fixture, ds, work, logs, args)
            results["lerobot"] = lr
            if "error" in lr:
                results["errors"]["lerobot"] = lr["error"]
                print(f"  FAILED: {lr['error']}", flush=True)
            else:
                print(f"  {lr['steps']} steps in {lr['wall_s']:.1f}s, {lr['steps_per_s']:.1f} steps/s "
                      f"(lerobot {lr['lerobot']}, torch {lr['torch']})", flush=True)

        # (a') RSS growth at Nx
        v = results.get("vlaflow")
        if not args.rss_growth:
            results["skipped"]["rss_growth"] = "--no-rss-growth"
        elif not v or "error" in v:
            results["skipped"]["rss_growth"] = "needs a successful 1x vlaflow run"
        else:
            est = v["wall_s"] * args.growth_factor
            if est > args.growth_budget_s:
                results["skipped"]["rss_growth"] = (f"estimated {est:.0f}s > --growth-budget-s "
                                                    f"{args.growth_budget_s:.0f}")
            else:
                shutil.rmtree(work / "vlaflow_out_1x", ignore_errors=True)
                t = time.perf_counter()
                big = build_scaled_dataset(args.fixture, work / "rlds_big" / "bridge_dataset" / "1.0.0",
                                           args.scale * args.growth_factor, args.shards * args.growth_factor,
                                           unique=not args.verbatim)
                print(f"built {args.growth_factor}x dataset: {big['steps']} steps / "
                      f"{big['source_bytes'] / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s", flush=True)
                if "tf" in results:
                    print(f"[tf {args.growth_factor}x] no decode ...", flush=True)
                    tg = run_tf(args.tf_python, big, work, logs, args.timeout, modes=("nodecode",), tag="tf_big")
                    results["tf_growth"] = tg
                    e = tg["nodecode"]
                    if "error" in e:
                        results["errors"]["tf_growth"] = e["error"]
                        print(f"  FAILED: {e['error']}", flush=True)
                    else:
                        print(f"  {e['wall_s']:.1f}s, {e['steps_per_s']:.0f} steps/s", flush=True)
                print(f"[vlaflow {args.growth_factor}x] ingest ...", flush=True)
                g = run_vlaflow(exe, big, work / "vlaflow_out_big", logs, "vlaflow_big",
                                args.timeout, args.vlaflow_arg)
                g["factor"] = args.growth_factor
                if "error" in g:
                    results["errors"]["vlaflow_growth"] = g["error"]
                    print(f"  FAILED: {g['error']}", flush=True)
                else:
                    g["rss_growth"] = g["peak_rss_bytes"] / v["peak_rss_bytes"]
                    g["pss_growth"] = (g["peak_pss_bytes"] / v["peak_pss_bytes"]) if v["peak_pss_bytes"] else None
                    dt = g["wall_s"] - v["wall_s"]
                    if dt > 0:
                        g["marginal_steps_per_s"] = (big["steps"] - ds["steps"]) / dt
                        g["marginal_mb_per_s"] = (big["source_bytes"] - ds["source_bytes"]) / 1e6 / dt
                    print(f"  {g['wall_s']:.1f}s, {g['steps_per_s']:.0f} steps/s, peak RSS "
                          f"{g['peak_rss_bytes'] / 1e6:.0f} MB ({g['rss_growth']:.2f}x of 1x), out/src "
                          f"{g['output_over_source_bytes']:.3f}", flush=True)
                    print(f"  largest processes (peak RSS MB): {_top(g)}", flush=True)
                results["vlaflow_growth"] = g
                if not args.keep:
                    shutil.rmtree(work / "rlds_big", ignore_errors=True)
                    shutil.rmtree(work / "vlaflow_out_big", ignore_errors=True)

        results["ratios"] = compute_ratios(results)
        for name, reason in results["skipped"].items():
            print(f"SKIPPED {name}: {reason}", flush=True)
        print_report(results)
        if args.json_path:
            text = json.dumps(results, indent=2, default=str)
            if args.json_path == "-":
                print(text)
            else:
                Path(args.json_path).write_text(text + "\n")
                print(f"\nJSON written to {args.json_path}")
    finally:
        if own_tmp and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
