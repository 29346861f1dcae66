"""Frame-accurate sampling on a variable-frame-rate video whose container fps lies; both decoders."""
from fractions import Fraction

import numpy as np
import pytest

from vlaflow.media import (ClipEncoder, DecordDecoder, FrameStorage, PyAVDecoder, UndecodableVideo, VideoIndex,
                           decode_rgb, probe, sample_indices)

# Irregular presentation times in ms (a phone stalling, bursting, dropping frames).
PTS_MS = [0, 33, 66, 100, 150, 151, 300, 333, 500, 700, 701, 702, 900, 1000, 1034, 1500]


def level(i: int) -> int:
    return 10 + 15 * i  # frame i is flat grey at this level: identity survives H.264


def write_vfr(path, pts_ms=PTS_MS, declared=30):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=declared, options={"bf": "0", "crf": "18"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level(i), np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def identify(rgb) -> int:
    return int(round((float(rgb.mean()) - 10) / 15))


def brute_force_nearest(times_ns, rate_hz):
    """Independent reference: for each grid time k / rate (exact Fractions) the nearest frame, ties earlier."""
    out = []
    k = 0
    while Fraction(k, 1) / rate_hz * 10**9 <= times_ns[-1]:
        g = Fraction(k, 1) / rate_hz * 10**9
        best = min(range(len(times_ns)), key=lambda i: (abs(times_ns[i] - g), i))
        if best not in out:
            out.append(best)
        k += 1
    return out


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    write_vfr(path)
    return path


def test_timestamps_come_from_pts_not_the_declared_rate(vfr):
    idx = probe(str(vfr))
    assert idx.num_frames == len(PTS_MS)
    assert idx.timestamps_ns.tolist() == [t * 1_000_000 for t in PTS_MS]  # exact, integer
    assert idx.mean_rate == Fraction(len(PTS_MS) - 1, 1) / Fraction(3, 2)
    # a constant-rate reading of the container's rate puts frames up to hundreds of ms off
    cfr = [i / float(idx.declared_rate) * 1000 for i in range(len(PTS_MS))]
    assert max(abs(a - b) for a, b in zip(cfr, PTS_MS)) > 100


@pytest.mark.parametrize("rate", [Fraction(10), Fraction(5), Fraction(30000, 1001)])
def test_sampling_matches_an_independent_reference(vfr, rate):
    idx = probe(str(vfr))
    got = sample_indices(idx.timestamps_ns, rate).tolist()
    assert got == brute_force_nearest([t * 1_000_000 for t in PTS_MS], rate)
    assert got == sorted(set(got))


def test_both_decoders_return_exactly_the_sampled_frames(vfr):
    idx = probe(str(vfr))
    picks = sample_indices(idx.timestamps_ns, Fraction(10))
    assert picks.tolist() == brute_force_nearest([t * 1_000_000 for t in PTS_MS], Fraction(10))
    assert len(picks) < len(PTS_MS)  # bursts collapse, gaps are not filled with repeats
    for dec in (PyAVDecoder(str(vfr), idx), DecordDecoder(str(vfr), idx)):
        frames = list(dec.frames(picks))
        assert [i for i, _ in frames] == picks.tolist()
        assert [identify(a) for _, a in frames] == picks.tolist(), type(dec).__name__
        # a second call on the same open decoder seeks back correctly
        assert [identify(a) for _, a in dec.frames([1, 14])] == [1, 14]
        dec.close()


def test_frame_storage_encodes_samples_as_images_or_one_clip(vfr):
    idx = probe(str(vfr))
    picks = sample_indices(idx.timestamps_ns, Fraction(10))
    frames = [a for _, a in PyAVDecoder(str(vfr), idx).frames(picks)]
    jpegs = [FrameStorage().encode_image(a) for a in frames]
    pngs = [FrameStorage("png").encode_image(a) for a in frames]
    assert all(j[:2] == b"\xff\xd8" for j in jpegs) and all(p[:4] == b"\x89PNG" for p in pngs)
    assert all(np.array_equal(decode_rgb(p, "png"), a) for p, a in zip(pngs, frames))  # lossless
    clip = FrameStorage("mp4", gop=3).clip(iter(frames), Fraction(10))
    assert clip.frame_index.tolist() == list(range(len(picks)))
    import io

    cidx = probe(io.BytesIO(clip.data))
    assert cidx.num_frames == len(picks) and np.all(np.diff(cidx.timestamps_ns) == 100_000_000)
    got = [identify(a) for _, a in PyAVDecoder(io.BytesIO(clip.data), cidx).frames(range(len(picks)))]
    assert got == picks.tolist()


def test_bad_videos(tmp_path, vfr):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(UndecodableVideo):
        probe(str(tmp_path / "junk.mp4"))
    idx = probe(str(vfr))
    with pytest.raises(UndecodableVideo, match="past the video"):
        list(PyAVDecoder(str(vfr), idx).frames([len(PTS_MS)]))
    # a truncated file whose index still lists every frame: decoding stops short, named error
    enc = ClipEncoder(Fraction(10), "h264", gop=50)
    rng = np.random.default_rng(0)
    for _ in range(30):
        enc.add(rng.integers(0, 255, (48, 64, 3), np.uint8))
    data = enc.finish()
    moov_first = tmp_path / "cut.mp4"
    import av

    with av.open(io_bytes(data)) as src, av.open(str(moov_first), "w", options={"movflags": "faststart"}) as dst:
        ost = dst.add_stream_from_template(src.streams.video[0], opaque=True)
        for p in src.demux(src.streams.video[0]):
            if p.dts is not None:
                p.stream = ost
                dst.mux(p)
    whole = moov_first.read_bytes()
    moov_first.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(UndecodableVideo):
        cut = probe(str(moov_first))
        list(PyAVDecoder(str(moov_first), cut).frames(range(cut.num_frames)))


def io_bytes(data):
    import io

    return io.BytesIO(data)


def test_grid_point_on_the_last_frame_keeps_it():
    """29.97 fps timestamps are rounded to whole ns; sampling at the same rate must keep all 300 frames."""
    rate = Fraction(30000, 1001)
    idx = VideoIndex(np.arange(300, dtype=np.int64) * 1001, Fraction(1, 30000), 64, 48, rate)
    assert sample_indices(idx.timestamps_ns, rate).tolist() == list(range(300))
    assert sample_indices(idx.timestamps_ns, Fraction(10)).tolist()[-1] == 297  # 9.9099 s: grid point 9.9 s


def test_media_sees_only_schemas():
    """The layering rule, from the source: media/ imports no converter, pipeline or tokenizer module."""
    import ast
    from pathlib import Path

    for path in (Path(__file__).parents[2] / "media").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("vlaflow.") or name.startswith(("vlaflow.schemas", "vlaflow.media")), \
                    (path.name, name)
