"""--opt storage: parsed once, applied by the writer to any converter's episodes; MP4 frames decode back close
to the source, depth and 16-bit frames stay exact images, passthrough keeps the bytes."""
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlaflow.media import STORAGE_OPTION_KEYS, FrameReader, FrameStorage, ShardVideos, decode_rgb, encode_image, resolve
from vlaflow.media.storage import step_rate
from vlaflow.schemas import Col, InputError, UndecodableImage, parse_fps, step_timestamps_ns, validate_episode

_spec = importlib.util.spec_from_file_location("te", Path(__file__).parents[1] / "schemas/test_episode.py")
te = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(te)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def moving(t: int, size=(48, 64)) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    frames = []
    for i in range(t):
        f = base.copy()
        f[8:20, 4 + 4 * i:16 + 4 * i] = (220, 40, 40)
        frames.append(f)
    return frames


def depth_png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 65535, (16, 16)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_options_parse_once_and_fail_in_one_line():
    assert FrameStorage.from_options({}) == FrameStorage()
    s = FrameStorage.from_options({"storage": "MP4", "video_codec": "av1", "gop": "4", "crf": "30", "x": "1"})
    assert (s.kind, s.codec, s.gop, s.crf, s.as_video) == ("mp4", "av1", 4, 30, True)
    assert {"storage", "video_codec", "gop", "crf", "jpeg_quality"} == STORAGE_OPTION_KEYS
    for bad in ({"storage": "gif"}, {"video_codec": "vp9"}, {"gop": "0"}, {"gop": "x"}, {"jpeg_quality": "101"}):
        with pytest.raises(InputError) as err:
            FrameStorage.from_options(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("fps", ["5", "15/2", "30000/1001", "20"])
def test_clip_rate_is_the_exact_step_rate(fps):
    assert step_rate(step_timestamps_ns(37, parse_fps(fps))) == parse_fps(fps)


@pytest.mark.parametrize("kind", [None, "jpeg", "png"])
def test_image_storage_is_passthrough(kind):
    jpegs = [encode_image(f, "jpeg") for f in moving(4)]
    pngs = [encode_image(f, "png") for f in moving(4)]
    ep = te.make_episode(4, images={"primary": list(jpegs), "wrist": list(pngs)})
    assert FrameStorage(kind).apply(ep) is ep
    assert ep.images["primary"] == jpegs and ep.images["wrist"] == pngs and not ep.videos


def test_mp4_turns_8bit_cameras_into_clips_and_keeps_depth_exact(tmp_path):
    t = 6
    src = moving(t)
    depth = [depth_png(i) for i in range(t)]
    partial = [encode_image(f, "jpeg") for f in src[:-1]] + [None]
    ep = te.make_episode(t, images={"primary": [encode_image(f, "jpeg", 95) for f in src],
                                    "wrist": [encode_image(f, "png") for f in src],
                                    "depth_primary": list(depth), "secondary": partial})
    out = FrameStorage("mp4", gop=3).apply(ep)
    assert sorted(out.videos) == ["primary", "wrist"]
    assert out.images["depth_primary"] == depth  # 16-bit measurements: never lossy, bytes untouched
    assert out.images["secondary"] == partial  # a missing step cannot be a video reference
    assert "primary" not in out.images and ep.images["primary"] is not None  # the source episode is not mutated
    validate_episode(out)
    fs, root = resolve(str(tmp_path))
    store = ShardVideos(fs, root, lambda role, part: f"videos/s.{role}.mp4")
    refs = {role: store.append(role, clip) for role, clip in out.videos.items()}
    store.close()
    reader = FrameReader(str(tmp_path))
    for role, ref in refs.items():
        assert ref.frame_index.tolist() == list(range(t))
        got = reader.read(ref.path, ref.frame_index)
        for i, (frame, data) in enumerate(zip(got, ep.images[role])):
            assert psnr(frame, decode_rgb(data, "src")) > 30, (role, i)


def test_mp4_of_a_frame_that_does_not_decode_sinks_the_episode():
    frames = [encode_image(f, "jpeg") for f in moving(3)]
    frames[1] = frames[1][:40] + b"\0" * 200 + b"\xff\xd9"
    with pytest.raises(UndecodableImage, match="images.primary step 1"):
        FrameStorage("mp4").apply(te.make_episode(3, images={"primary": frames}))


@pytest.mark.slow
def test_openx_ingest_stored_as_mp4_through_ray(tmp_path, ray_local):
    """An Open-X source stored as MP4 with no converter change: references, validate --images, PSNR > 30 dB."""
    from vlaflow.converters import ConverterOptions
    from vlaflow.converters.openx_rlds import OpenXRLDSConverter
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    src = write_sample_dataset(tmp_path / "src", episodes=6, steps=10, shards=2)
    out = tmp_path / "out"
    res = run_ingest(IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(extra={"storage": "mp4"}),
                                  target_shard_mb=0.05))
    assert res.clean and res.ledger["episodes_out"] == 12
    cli = subprocess.run([str(Path(sys.executable).parent / "vlaflow"), "validate", str(out), "--images"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    shards = res.manifest["shards"]
    assert len(shards) > 1 and all(len(s["videos"]) == 4 for s in shards)  # one MP4 per camera and shard
    source = {e.episode_id: e for u in OpenXRLDSConverter(str(src)).work_units(1 << 30)
              for e in OpenXRLDSConverter(str(src)).read(u)}
    reader = FrameReader(out.as_uri())
    checked = 0
    for s in shards:
        t = pq.read_table(out / s["path"])
        assert t[Col.IMAGES].combine_chunks().field("primary").null_count == len(t)  # no image bytes
        videos = t[Col.VIDEOS].combine_chunks()
        for role in ("primary", "secondary", "tertiary", "wrist"):
            refs = videos.field(role).to_pylist()
            for eid, step, ref in zip(t[Col.EPISODE_ID].to_pylist(), t[Col.STEP_INDEX].to_pylist(), refs):
                got = reader.frame(None, ref)
                want = decode_rgb(source[eid].images[role][step], "source")
                assert psnr(got, want) > 30, (eid, role, step)
                checked += 1
    assert checked == 4 * sum(ep.length for ep in source.values())
