"""Video in and out: exact clocks, sampling to a rate, two decoders, one clip encoder.

Clock: a frame's time is its pts × the stream's time base, kept as integers (``timestamps_ns``); the
container's declared fps is never trusted (it lies for VFR phone video). Frame *index* means position in
presentation order (sorted pts), which is what decord indexes and what frame references store.

Decoders: ``pyav`` streams forward from the nearest keyframe (cheap for dense sampling, any container,
VFR-safe); ``decord`` jumps to indices (cheap for sparse sampling of long local files). Both return RGB
uint8 arrays for the same indices.

Frames out: one MP4 clip per episode and camera (``ClipEncoder``), which ``shard_videos.ShardVideos``
appends to the shard's video file.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from vlaflow.schemas import EpisodeError
from vlaflow.schemas.conventions import NS_PER_S

DECODERS = ("pyav", "decord")
CODECS = {"h264": "libx264", "av1": "libsvtav1"}
_DECORD_BATCH = 16  # frames per decord call: bounds memory for 1080p


class UndecodableVideo(EpisodeError):
    """A video that cannot be opened, demuxed or decoded (truncated, corrupt, no video stream)."""

    code = "undecodable_video"


def _open_av(src):
    import av

    try:
        return av.open(src)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise UndecodableVideo(f"{_name(src)}: cannot open video ({type(err).__name__}: {err})") from None


def _name(src) -> str:
    return os.path.basename(src) if isinstance(src, str) else getattr(src, "name", "<video bytes>")


@dataclass
class VideoIndex:
    """Every frame's pts in presentation order, from demuxing alone (no decode)."""

    pts: np.ndarray  # int64 [N], sorted
    time_base: Fraction
    width: int
    height: int
    declared_rate: Fraction | None  # what the container claims; informational only

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def timestamps_ns(self) -> np.ndarray:
        """(pts - pts[0]) × time base in ns, rounded half up in integers."""
        rel = self.pts - self.pts[0]
        num, den = self.time_base.numerator * NS_PER_S, self.time_base.denominator
        return (rel * num + den // 2) // den

    @property
    def mean_rate(self) -> Fraction | None:
        """Frames per second measured from the pts (exact rational)."""
        if self.num_frames < 2:
            return None
        return Fraction(self.num_frames - 1) / (int(self.pts[-1] - self.pts[0]) * self.time_base)


def probe(src) -> VideoIndex:
    """Demux the first video stream's packets; ``src`` is a path or a binary file object."""
    import av

    container = _open_av(src)
    try:
        if not container.streams.video:
            raise UndecodableVideo(f"{_name(src)}: no video stream")
        stream = container.streams.video[0]
        pts = []
        try:
            for pkt in container.demux(stream):
                if pkt.pts is not None and pkt.size:
                    pts.append(pkt.pts)
        except (av.error.FFmpegError, OSError) as err:
            raise UndecodableVideo(f"{_name(src)}: demux failed after {len(pts)} packets "
                                   f"({type(err).__name__}: {err})") from None
        if not pts:
            raise UndecodableVideo(f"{_name(src)}: video stream has no frames")
        rate = stream.average_rate or stream.guessed_rate
        return VideoIndex(np.unique(np.asarray(pts, np.int64)), Fraction(stream.time_base),
                          stream.codec_context.width, stream.codec_context.height,
                          Fraction(rate) if rate else None)
    finally:
        container.close()


def sample_indices(timestamps_ns: np.ndarray, rate_hz: Fraction, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames nearest to a ``rate_hz`` grid from frame ``start`` to ``stop`` (exclusive), ties to the earlier.

    The grid is integer ns from the first frame's time; a grid point in a VFR gap picks the frame nearest to
    it, and a frame picked twice is kept once, so row timestamps stay the true frame times."""
    ts = np.asarray(timestamps_ns, np.int64)[start:stop]
    if len(ts) == 0:
        return np.zeros(0, np.int64)
    span = int(ts[-1] - ts[0])
    step_num, step_den = NS_PER_S * rate_hz.denominator, rate_hz.numerator  # period = num / den ns
    # +1 ns: frame times are rounded to whole ns, so a grid point exactly on the last frame may land 1 ns past it
    k = np.arange((span + 1) * step_den // step_num + 1, dtype=np.int64)
    grid = ts[0] + (k * step_num + step_den // 2) // step_den
    return np.unique(nearest_frames(ts, grid)) + start


def nearest_frames(timestamps_ns: np.ndarray, targets_ns: np.ndarray) -> np.ndarray:
    """Index of the frame nearest to each target time (sorted timestamps), ties to the earlier frame."""
    ts = np.asarray(timestamps_ns, np.int64)
    right = np.clip(np.searchsorted(ts, targets_ns, side="left"), 0, len(ts) - 1)
    left = np.clip(right - 1, 0, len(ts) - 1)
    return np.where(np.abs(ts[left] - targets_ns) <= np.abs(ts[right] - targets_ns), left, right)


class PyAVDecoder:
    """Forward decoding from a keyframe; frames matched to indices through their pts. The container stays
    open between calls (a loader reuses it), ``close`` releases it."""

    def __init__(self, src, index: VideoIndex | None = None):
        self.src = src
        self.index = index or probe(src)
        self._pos = {int(p): i for i, p in enumerate(self.index.pts)}
        self._container = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(self, wanted) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, RGB array) for sorted unique ``wanted`` indices; raises if any is not decodable."""
        import av

        wanted = sorted(int(i) for i in wanted)
        if not wanted:
            return
        if wanted[-1] >= self.index.num_frames or wanted[0] < 0:
            raise UndecodableVideo(f"{_name(self.src)}: frame {wanted[-1]} past the video's "
                                   f"{self.index.num_frames} frames")
        if self._container is None:
            if hasattr(self.src, "seek"):
                self.src.seek(0)
            self._container = _open_av(self.src)
            self._container.streams.video[0].thread_type = "AUTO"
        container = self._container
        got = 0
        try:
            stream = container.streams.video[0]
            container.seek(int(self.index.pts[wanted[0]]), stream=stream, backward=True, any_frame=False)
            want = set(wanted)
            for frame in container.decode(stream):
                i = self._pos.get(frame.pts if frame.pts is not None else -1)
                if i is None or i not in want:
                    if i is not None and i > wanted[-1]:
                        break
                    continue
                yield i, frame.to_ndarray(format="rgb24")
                got += 1
                if i == wanted[-1]:
                    break
        except (av.error.FFmpegError, OSError, ValueError) as err:
            self.close()
            raise UndecodableVideo(f"{_name(self.src)}: decode failed after {got} of {len(wanted)} frames "
                                   f"({type(err).__name__}: {err})") from None
        if got != len(wanted):
            self.close()
            raise UndecodableVideo(f"{_name(self.src)}: only {got} of {len(wanted)} wanted frames decoded "
                                   "(truncated or corrupt video)")


class DecordDecoder:
    """Random access by index (local files only): decord seeks per batch."""

    def __init__(self, path: str, index: VideoIndex | None = None):
        import decord

        self.src = path
        self.index = index or probe(path)
        try:
            self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError and RuntimeError
            raise UndecodableVideo(f"{_name(path)}: decord cannot open it ({type(err).__name__})") from None
        if len(self.reader) != self.index.num_frames:
            raise UndecodableVideo(f"{_name(path)}: decord sees {len(self.reader)} frames, the container "
                                   f"index {self.index.num_frames}")

    def frames(self, wanted) -> Iterator[tuple[int, np.ndarray]]:
        wanted = sorted(int(i) for i in wanted)
        if wanted and (wanted[-1] >= self.index.num_frames or wanted[0] < 0):
            raise UndecodableVideo(f"{_name(self.src)}: frame {wanted[-1]} past the video's "
                                   f"{self.index.num_frames} frames")
        for a in range(0, len(wanted), _DECORD_BATCH):
            part = wanted[a:a + _DECORD_BATCH]
            try:
                batch = self.reader.get_batch(part).asnumpy()
            except Exception as err:
                raise UndecodableVideo(f"{_name(self.src)}: decord failed on frames {part[0]}..{part[-1]} "
                                       f"({type(err).__name__})") from None
            yield from zip(part, batch)

    def close(self) -> None:
        self.reader = None


def open_decoder(kind: str, path: str, fh=None, index: VideoIndex | None = None):
    """``fh`` (a binary file object) serves non-local paths; decord needs a local file."""
    if kind == "decord":
        if fh is not None:
            raise UndecodableVideo("decord reads local files only; use --opt decoder=pyav for remote video")
        return DecordDecoder(path, index)
    if kind != "pyav":
        raise ValueError(f"decoder must be one of {DECODERS}, got {kind!r}")
    return PyAVDecoder(fh if fh is not None else path, index)


class ClipEncoder:
    """One episode's sampled frames → an MP4 clip in memory, one frame per step at ``rate`` (pts = step).

    No B-frames, so decode order is presentation order and clips concatenate by remuxing; ``gop`` is the
    keyframe interval (small = faster random access, larger file)."""

    def __init__(self, rate: Fraction, codec: str = "h264", gop: int = 10, crf: int | None = None):
        import av

        if codec not in CODECS:
            raise ValueError(f"video codec must be one of {sorted(CODECS)}, got {codec!r}")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per clip otherwise
        self.buf = io.BytesIO()
        self.container = av.open(self.buf, "w", format="mp4")
        self.rate, self.codec, self.gop = rate, codec, gop
        crf = crf if crf is not None else (23 if codec == "h264" else 32)
        opts = {"crf": str(crf), "g": str(gop)}
        if codec == "h264":
            opts.update(preset="veryfast", bf="0")
        else:
            opts.update(preset="10")
        self.options = opts
        self.stream = None
        self.count = 0

    def add(self, rgb: np.ndarray) -> None:
        import av

        h, w = rgb.shape[0] & ~1, rgb.shape[1] & ~1  # yuv420p needs even sizes: drop an odd last row/column
        if self.stream is None:
            self.stream = self.container.add_stream(CODECS[self.codec], rate=self.rate, options=self.options)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
            self.stream.codec_context.time_base = Fraction(1) / self.rate
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        frame.pts = self.count
        frame.time_base = self.stream.codec_context.time_base
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)
        self.count += 1

    def finish(self) -> bytes:
        if self.stream is not None:
            for pkt in self.stream.encode(None):
                self.container.mux(pkt)
        self.container.close()
        return self.buf.getvalue()
