"""``epic_kitchens``: EPIC-KITCHENS-100-style action segments -> one episode per segment.

Input (``--input``) is an annotations CSV (``narration_id, participant_id, video_id, narration_timestamp,
start_timestamp, stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun, noun_class,
all_nouns, all_noun_classes``). Media live under the frames root (``--opt frames=DIR`` = ``--frames-root``,
default a ``frames/`` folder beside the CSV), per video either a folder ``<video_id>/frame_%010d.jpg`` (bytes
stored untouched) or a video ``<video_id>.MP4`` (``.mp4``) decoded with PyAV and JPEG-encoded
(``--opt jpeg_quality=90``). ``--opt videos=DIR`` (= ``--videos-root``) looks for videos in another folder.

Clock: the annotation frame numbers count the pre-extracted ``rgb_frames``, which were extracted at a fixed
rate, not at the video's fps: on the real EPIC-100 validation CSV, ``start_frame / start_timestamp`` is
60.0 for every video (29.97, 47.95, 59.94 and 90 fps alike), while the 50 fps extension videos were
extracted at 50. The converter measures this *frame-numbering rate* per video from the CSV's own
timestamps (median of frame / time over rows past 5 s, snapped to 50 or 60 within 2%), else uses 50 for
a 50 fps video and 60 otherwise; ``--opt frame_rate=`` overrides. The video's fps comes from
``EPIC_100_video_info.csv`` (``--opt video_info=PATH``, ``--opt fps=`` fallback) and is kept in ``extra``.
Frames are sampled every ``round(frame_rate / rate_hz)`` numbered frames from ``start_frame`` to
``stop_frame`` inclusive (``--opt rate_hz=10``); ``timestamp_ns = frame * 1e9 / frame_rate`` in integers.
A video (``<video_id>.MP4``) is indexed by its pts: numbered frame ``n`` is the video frame nearest to
``n / frame_rate`` seconds (exact rationals), decoded with ``--opt decoder=pyav|decord``. Frames are stored
as JPEG (folder frames keep their bytes) or, with ``--opt storage=mp4``, in the shard's MP4.

No action or state is recorded: action/state are masked out (zeros), ``action_raw`` is [T, 0],
``action_valid`` is False. Verb/noun labels and timestamps go to ``extra``.
"""
from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from vlaflow.media import nearest_frames, open_decoder, probe, resolve
from vlaflow.schemas import DatasetInfo, EpisodeError, InputError
from vlaflow.schemas.conventions import NS_PER_S

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..units import record_units
from .errors import BadSegment, MissingFrames, MissingVideoInfo, UnsafePath
from .trajectory import Observations, build_chunks, pad_horizon
from .video import HandOptions, store_frames

EMBODIMENT = "human_egocentric"
TASK_FAMILY = "egocentric"
VIDEO_INFO = "EPIC_100_video_info.csv"
FRAME_NAME = "frame_{:010d}.jpg"
VIDEO_EXTS = (".MP4", ".mp4")
COLUMNS = ("narration_id", "video_id", "start_frame", "stop_frame", "narration")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_EXTRA_KEYS = ("participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
               "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class", "all_nouns",
               "all_noun_classes")
_FRAME_BYTES = 15_000  # planning estimate per stored frame


def safe_id(value, what: str) -> str:
    """A plain path component from data (letters, digits, ``_ - .``; no ``..``, no separators)."""
    s = value.strip() if isinstance(value, str) else ""
    if not _SAFE.match(s) or ".." in s:
        raise UnsafePath(f"{what} {str(value)[:80]!r} is not a plain name")
    return s


def fps_fraction(value) -> Fraction:
    """``50.0`` -> 50, ``59.9400599400599`` -> 60000/1001, ``30000/1001`` kept exact."""
    text = str(value).strip()
    fps = Fraction(text) if "/" in text else Fraction(text).limit_denominator(1001)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {value!r}")
    return fps


def frame_step(fps: Fraction, rate_hz: Fraction) -> int:
    """Source frames between samples: round(fps / rate) half up, at least 1 (exact)."""
    q = fps / rate_hz
    return max(1, int((q + Fraction(1, 2)) // 1))


def frame_timestamps_ns(frames: np.ndarray, fps: Fraction) -> np.ndarray:
    """round(frame * 1e9 / fps) in integers (half up)."""
    f = np.asarray(frames, np.int64)
    return (f * NS_PER_S * fps.denominator + fps.numerator // 2) // fps.numerator


class EpicKitchensConverter(Converter):
    name = "epic_kitchens"
    version = "1.0"
    description = ("EPIC-KITCHENS-style action segments (annotations CSV + frame_%010d.jpg folders or MP4 per "
                   "video), one episode per segment, narration as instruction")

    @dataclass(frozen=True)
    class Options(HandOptions):
        frames: str | None = option(None, "frames root, <video_id>/frame_%010d.jpg (default frames/ beside the CSV)")
        videos: str | None = option(None, "folder of <video_id>.MP4 (default: the frames root)")
        video_info: str | None = option(None, "EPIC_100_video_info.csv with each video's fps (default beside the CSV)")
        fps: Fraction | None = option(None, "a video's fps where the video info lacks it", parse=fps_fraction)
        frame_rate: Fraction | None = option(None, "rate the annotation frame numbers count at (default: measured "
                                                   "per video from the CSV)", parse=fps_fraction)
        dataset: str | None = option(None, "dataset name (default epic_kitchens_100)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        if not input_path.lower().endswith(".csv"):
            return False
        try:
            fs, path = resolve(input_path)
            with fs.open_input_stream(path) as f:
                header = f.read(4096).decode("utf-8", "replace").splitlines()[0]
            return all(c in header.split(",") for c in COLUMNS)
        except Exception:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.fs, self.csv_path = resolve(input_path)
        info = self.fs.get_file_info(self.csv_path)
        if info.type.name != "File":
            raise InputError(f"{input_path}: not a file (expected an EPIC-KITCHENS annotations CSV)")
        o = self.opts
        here = posixpath.dirname(self.csv_path)
        self.frames_root = self._root(o.frames, posixpath.join(here, "frames"))
        self.videos_root = self._root(o.videos, self.frames_root)
        self.video_info_path = self._root(o.video_info, posixpath.join(here, VIDEO_INFO))
        self.rate, self.default_fps, self.frame_rate_opt = o.rate_hz, o.fps, o.frame_rate
        stem = posixpath.basename(self.csv_path).rsplit(".", 1)[0]
        guess = stem.rsplit("_", 1)[-1].lower() if stem.upper().startswith("EPIC_") else ""
        self.split = self.options.split or (guess if _SAFE.match(guess or "-") else "") or "train"
        self.dataset = o.dataset or "epic_kitchens_100"
        self._rows: list | None = None
        self._fps: dict | None = None
        self._numbering: dict | None = None
        self._dirs: dict = {}

    def _root(self, value: str | None, default: str) -> str:
        return resolve(value)[1] if value else default

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_rows"], d["_fps"], d["_numbering"], d["_dirs"] = None, None, None, {}
        return d

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=EMBODIMENT, fps=self.rate,
            license="CC BY-NC 4.0 (EPIC-KITCHENS-100; non-commercial)",
            source_uri=f"{self.input_path} (EPIC-KITCHENS-100 action segments)", converter=self.name,
            converter_version=self.version, action_frame="none", control_mode="none",
            cameras={"primary": "frame_%010d.jpg / <video_id>.MP4"}, action_raw_keys=[], state_raw_keys=[],
            notes=[f"one episode per narrated segment, frames sampled every round(frame_rate/{self.rate}) numbered "
                   "frames (integer; timestamp_ns = frame * 1e9 / frame_rate, absolute in the video); frame_rate = "
                   "the rgb_frames numbering rate measured from the CSV per video (extra.frame_rate)",
                   "no action or state recorded: all slots masked out, action_raw empty, action_valid false"],
        )]

    # -- sources ----------------------------------------------------------------------------
    def _read_text(self, path: str) -> str:
        with self.fs.open_input_stream(path, compression=None) as f:
            return f.read().decode("utf-8-sig")

    def _load(self) -> list[dict]:
        if self._rows is None:
            try:
                text = self._read_text(self.csv_path)
            except (OSError, UnicodeDecodeError) as err:
                raise InputError(f"{self.input_path}: cannot read annotations CSV ({err})") from None
            reader = csv.DictReader(io.StringIO(text, newline=""))
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{self.input_path}: not an EPIC-KITCHENS annotations CSV (no columns {missing})")
            self._rows = list(reader)
        return self._rows

    def _video_fps(self) -> dict:
        if self._fps is None:
            self._fps = {}
            try:
                if self.fs.get_file_info(self.video_info_path).type.name == "File":
                    for r in csv.DictReader(io.StringIO(self._read_text(self.video_info_path), newline="")):
                        try:
                            self._fps[(r.get("video_id") or "").strip()] = fps_fraction(r["fps"])
                        except (KeyError, ValueError, TypeError, ZeroDivisionError):
                            continue
            except (OSError, UnicodeDecodeError):
                pass
        return self._fps

    def _frame_rate(self, video_id: str) -> Fraction:
        """The rate the annotation frame numbers count at (see the module docstring)."""
        if self.frame_rate_opt is not None:
            return self.frame_rate_opt
        if self._numbering is None:
            ratios: dict[str, list[float]] = {}
            for r in self._load():
                try:
                    t = _seconds(r["start_timestamp"])
                    if t >= 5:
                        ratios.setdefault(r["video_id"].strip(), []).append(int(r["start_frame"]) / t)
                except (KeyError, ValueError, TypeError, AttributeError):
                    continue
            self._numbering = {}
            for vid, xs in ratios.items():
                med = float(np.median(xs))
                for cand in (50, 60):
                    if len(xs) >= 3 and abs(med - cand) <= 0.02 * cand:
                        self._numbering[vid] = Fraction(cand)
        if video_id in self._numbering:
            return self._numbering[video_id]
        fps = self._video_fps().get(video_id) or self.default_fps
        return Fraction(50) if fps is not None and abs(fps - 50) < Fraction(1, 2) else Fraction(60)

    def _kind(self, path: str) -> str:
        return self.fs.get_file_info(path).type.name

    def _media(self, video_id: str) -> tuple[str, str] | None:
        """('dir', folder) or ('video', file) for a video, cached; None when absent."""
        if video_id not in self._dirs:
            found = None
            folder = posixpath.join(self.frames_root, video_id)
            if self._kind(folder) == "Directory":
                found = ("dir", folder)
            else:
                for ext in VIDEO_EXTS:
                    p = posixpath.join(self.videos_root, video_id + ext)
                    if self._kind(p) == "File":
                        found = ("video", p)
                        break
            self._dirs[video_id] = found
        return self._dirs[video_id]

    # -- work units ---------------------------------------------------------------------------
    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        rows = self._load()
        costs, vids = [], [(r.get("video_id") or "").strip() for r in rows]
        for r, vid in zip(rows, vids):
            try:
                n = int(r["stop_frame"]) - int(r["start_frame"]) + 1
                costs.append(max(1, max(1, n // frame_step(self._frame_rate(vid), self.rate)) * _FRAME_BYTES))
            except (ValueError, TypeError, KeyError):
                costs.append(1)
        return record_units(self.csv_path, self.split, costs, target_bytes, keys=vids)  # a unit reads one video

    # -- reading ------------------------------------------------------------------------------
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        rows = self._load()
        stop = len(rows) if unit.stop is None else min(unit.stop, len(rows))
        source = None
        try:
            for index in range(unit.start, stop):
                item, source = self._segment(rows[index], index, unit, source)
                yield item
        finally:
            if source is not None:
                source.close()

    def _folder_frames(self, folder: str, vid: str, frames: np.ndarray, a: int, b: int) -> list[bytes]:
        images = []
        for f in frames.tolist():
            p = posixpath.join(folder, FRAME_NAME.format(f))
            try:
                with self.fs.open_input_stream(p, compression=None) as fh:
                    images.append(fh.read())
            except (FileNotFoundError, OSError):
                step = int(frames[1] - frames[0]) if len(frames) > 1 else 1
                raise MissingFrames(f"{vid}/{FRAME_NAME.format(f)} is missing (segment frames {a}..{b}, every {step})") from None
        return images

    def _segment(self, r: dict, index: int, unit: WorkUnit, source):
        where = f"{unit.source}#{index}"
        try:
            key = f"epic/{safe_id(r.get('narration_id'), 'narration_id')}"
        except UnsafePath as err:
            return Rejected.from_error(f"epic/row{index}", err, where), source
        steps = 0
        clip = tracker = None
        try:
            vid = safe_id(r.get("video_id"), "video_id")
            try:
                a, b = int(str(r["start_frame"]).strip()), int(str(r["stop_frame"]).strip())
            except (KeyError, ValueError, TypeError):
                raise BadSegment(f"unparseable frames start={r.get('start_frame')!r} stop={r.get('stop_frame')!r}") from None
            if a < 0 or b < a:
                raise BadSegment(f"bad frame range {a}..{b} (stop < start or negative)")
            media = self._media(vid)
            if media is None:
                raise MissingFrames(f"no frame folder {vid}/ under {self.frames_root} and no {vid}.MP4 under "
                                    f"{self.videos_root}")
            numbering = self._frame_rate(vid)
            frames = np.arange(a, b + 1, frame_step(numbering, self.rate), dtype=np.int64)
            steps = len(frames)
            fps = self._video_fps().get(vid) or self.default_fps
            tracker = self._tracker()
            if media[0] == "dir":
                images = self._folder_frames(media[1], vid, frames, a, b)
                if tracker is not None:
                    for data in images:
                        tracker.add(_rgb(data))
                if self.frame_storage.as_video:
                    images, clip = None, self.frame_storage.clip(map(_rgb, images), self.rate)
            else:
                if source is None or source.path != media[1]:
                    if source is not None:
                        source.close()
                    source = _VideoSource(self.fs, media[1], self.opts.decoder)
                if fps is None:
                    fps = source.index.declared_rate
                vframes = source.frames_at(frames, numbering)
                decoder = source.decoder
                if tracker is not None:
                    from .hands2d import TapDecoder

                    decoder = TapDecoder(source.decoder, tracker.add)
                images, clip = store_frames(decoder, vframes, self.frame_storage, self.rate)
            traj = self._hand_traces(tracker, len(frames))
            if fps is None:
                raise MissingVideoInfo(f"no fps for video {vid} (not in {posixpath.basename(self.video_info_path)}; "
                                       "pass --opt fps=)")
        except EpisodeError as err:
            if tracker is not None:
                tracker.close()
            return Rejected.from_error(key, err, where, steps), source
        extra = {k: r.get(k) for k in _EXTRA_KEYS if k in r}
        extra.update({"frames": frames.tolist(), "fps": f"{fps.numerator}/{fps.denominator}",
                      "frame_rate": f"{numbering.numerator}/{numbering.denominator}",
                      "media": media[0], "narration_id": r.get("narration_id")})
        if media[0] == "video":
            extra["video_frames"] = vframes.tolist()
        ep = self.make_episode(  # no action or state recorded: all masked out
            key, timestamp_ns=frame_timestamps_ns(frames, numbering), instruction=str(r.get("narration") or ""),
            images={"primary": images} if images is not None else {},
            videos={"primary": clip} if clip is not None else {}, split=unit.split, source_file=unit.source,
            source_index=index, extra=extra, trajectory=traj[0], trajectory_mask=traj[1])
        if tracker is not None:
            extra["hand_tracker"] = "mediapipe==0.10.14"
        return ep, source

    def _tracker(self):
        if self.opts.hands != "mediapipe":
            return None
        from .hands2d import MediaPipeHands

        return MediaPipeHands(mirrored=self.opts.mirrored)

    def _hand_traces(self, tracker, t: int):
        """2D hand traces of the sampled frames as trajectory targets (image space; no intrinsics needed)."""
        if tracker is None:
            return None, None
        try:
            pts, ok = tracker.image_points()
        finally:
            tracker.close()
        obs = Observations(image_points=pts, image_valid=ok)
        return pad_horizon(*build_chunks(obs, np.broadcast_to(np.eye(4), (t, 4, 4)), None, None, self.opts.horizon))


def _seconds(text: str) -> float:
    h, m, sec = str(text).strip().split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def _rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class _VideoSource:
    """One open video of the unit: its pts index (probed once) and a decoder."""

    def __init__(self, fs, path: str, decoder: str):
        self.path = path
        local = os.path.isfile(path)
        self._fh = None if local else fs.open_input_file(path)
        self.index = probe(path if local else self._fh)
        self.decoder = open_decoder(decoder, path, fh=self._fh, index=self.index)

    def frames_at(self, numbered: np.ndarray, rate: Fraction) -> np.ndarray:
        """Numbered frames → video frame indices (nearest pts to n / rate); past the end → MissingFrames."""
        ts = self.index.timestamps_ns
        want = frame_timestamps_ns(numbered, rate)
        period = int(NS_PER_S / rate)
        if want[-1] > ts[-1] + period // 2:
            raise MissingFrames(f"{posixpath.basename(self.path)}: frame {int(numbered[-1])} ({want[-1] / 1e9:.2f} s) "
                                f"is past the video's end ({ts[-1] / 1e9:.2f} s, {self.index.num_frames} frames)")
        pick = nearest_frames(ts, want)
        if len(np.unique(pick)) != len(pick):
            raise MissingFrames(f"{posixpath.basename(self.path)}: the video has fewer frames than rate_hz needs "
                                f"(two samples map to one frame); lower --opt rate_hz")
        return pick

    def close(self):
        self.decoder.close()
        if self._fh is not None:
            self._fh.close()
