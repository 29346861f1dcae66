"""EPIC-KITCHENS-style converter: real annotations CSV, real EPIC frames (P28_101, frames 80..115 step 5),
an MP4 built from them, and one end-to-end ingest through Ray."""
from __future__ import annotations

import csv
import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from vlaflow.converters.base import ConverterOptions, Rejected
from vlaflow.converters.ego import EpicKitchensConverter
from vlaflow.converters.ego.epic import fps_fraction, frame_step, safe_id
from vlaflow.converters.ego.errors import UnsafePath
from vlaflow.schemas import Episode, validate_episode

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("VLAFLOW_SHARED", REPO.parent / "shared"))
EGO = SHARED / "fixtures/ego"
ANN = EGO / "epic_kitchens_100_annotations"
FRAMES = EGO / "epic_fields_frames"
HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
          "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
          "all_noun_classes"]
FRAME_IDS = list(range(80, 116, 5))


@pytest.fixture(scope="module")
def ego_fixture() -> Path:
    if not (ANN / "EPIC_100_validation.csv").exists() or not (FRAMES / "P28_101").is_dir():
        pytest.skip(f"real EPIC-KITCHENS fixtures not found under {EGO} (needs ../shared beside the repo)")
    return EGO


def _row(nid="P28_101_0", vid="P28_101", start=80, stop=115, narration="open drawer"):
    return {"narration_id": nid, "participant_id": "P28", "video_id": vid, "narration_timestamp": "00:00:01.700",
            "start_timestamp": "00:00:01.60", "stop_timestamp": "00:00:02.30", "start_frame": str(start),
            "stop_frame": str(stop), "narration": narration, "verb": "open", "verb_class": "3",
            "noun": "drawer", "noun_class": "8", "all_nouns": "['drawer']", "all_noun_classes": "[8]"}


def write_inputs(tmp: Path, rows: list[dict]) -> Path:
    """An annotations CSV in the real format plus a video-info CSV holding P28_101's real row."""
    tmp.mkdir(parents=True, exist_ok=True)
    ann = tmp / "EPIC_100_test.csv"
    with ann.open("w", newline="") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        w.writerows(rows)
    info = [line for line in (ANN / "EPIC_100_video_info.csv").read_text().splitlines()
            if line.startswith(("video_id,", "P28_101,"))]
    assert len(info) == 2
    (tmp / "EPIC_100_video_info.csv").write_text("\n".join(info) + "\n")
    return ann


def convert(ann: Path, **opts):
    conv = EpicKitchensConverter(str(ann), ConverterOptions(extra=opts))
    units = conv.work_units(64 << 20)
    items = [it for u in units for it in conv.read(u)]
    return conv, units, items


def test_helpers():
    assert fps_fraction("59.9400599400599") == Fraction(60000, 1001)
    assert fps_fraction("50.0") == 50 and fps_fraction("30000/1001") == Fraction(30000, 1001)
    assert frame_step(Fraction(50), Fraction(10)) == 5
    assert frame_step(Fraction(60000, 1001), Fraction(10)) == 6
    assert frame_step(Fraction(50), Fraction(100)) == 1
    assert safe_id(" P01_11 ", "video_id") == "P01_11"
    for bad in ("../etc", "a/b", "a\\b", "", "..", "/abs", "x\x00", None):
        with pytest.raises(UnsafePath):
            safe_id(bad, "video_id")


def test_real_csv_every_row_planned_and_quarantined(ego_fixture, tmp_path):
    src = ANN / "EPIC_100_validation.csv"
    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
    conv, units, items = convert(src, frames=str(tmp_path / "no_frames"))
    assert conv.split == "validation" and EpicKitchensConverter.sniff(str(src))
    assert units[0].start == 0 and units[-1].stop is None  # the last unit reads to the end of the CSV
    assert all(a.stop == b.start for a, b in zip(units, units[1:]))
    videos = [{r["video_id"] for r in rows[u.start:u.stop]} for u in units]
    assert all(len(v) == 1 for v in videos)  # one video per unit
    assert set().union(*videos) == {r["video_id"] for r in rows}
    assert len(items) == len(rows)
    assert all(isinstance(it, Rejected) and it.code == "missing_frames" for it in items)
    assert [it.episode_key for it in items] == [f"epic/{r['narration_id']}" for r in rows]


def test_frame_numbering_rate_measured_from_the_real_csv(ego_fixture):
    """EPIC frame numbers count the 60 fps rgb_frames whatever the video's fps (29.97, 59.94, 90 here)."""
    conv = EpicKitchensConverter(str(ANN / "EPIC_100_validation.csv"), ConverterOptions())
    fps = conv._video_fps()
    vids = {r["video_id"] for r in conv._load()}
    by_fps = {}
    for v in sorted(vids):
        by_fps.setdefault(round(float(fps[v]), 2), conv._frame_rate(v))
    assert by_fps[59.94] == 60 and by_fps[29.97] == 60 and by_fps[90.0] == 60
    assert conv._frame_rate("P28_101") == 50  # not in the CSV: a 50 fps video's frames are numbered at 50
    conv = EpicKitchensConverter(str(ANN / "EPIC_100_validation.csv"), ConverterOptions(extra={"frame_rate": "60000/1001"}))
    assert conv._frame_rate("P01_11") == Fraction(60000, 1001)


def test_folder_frames_byte_exact(ego_fixture, tmp_path):
    ann = write_inputs(tmp_path, [_row()])
    conv, units, items = convert(ann, frames=str(FRAMES))
    assert len(units) == 1 and len(items) == 1
    ep = items[0]
    assert isinstance(ep, Episode), ep
    validate_episode(ep, verify_images=True)
    assert ep.episode_id == "epic/P28_101_0" and ep.instruction == "open drawer" and ep.language == "en"
    assert ep.task_family == "egocentric" and ep.embodiment == "human_egocentric"
    assert "head-mounted camera" in ep.embodiment_prompt and "Action: none" in ep.embodiment_prompt
    assert ep.length == 8 and ep.extra["frames"] == FRAME_IDS  # rate 10 Hz at 50 fps: every 5th frame
    assert ep.images["primary"] == [(FRAMES / "P28_101" / f"frame_{f:010d}.jpg").read_bytes() for f in FRAME_IDS]
    assert ep.timestamp_ns.dtype == np.int64
    assert ep.timestamp_ns.tolist() == [f * 1_000_000_000 // 50 for f in FRAME_IDS]
    assert not ep.action.any() and not np.any(ep.action_mask) and ep.action_raw.shape == (8, 0)
    assert not ep.state.any() and not np.any(ep.state_mask) and not ep.action_valid.any()
    assert ep.extra["verb_class"] == "3" and ep.extra["noun"] == "drawer" and ep.extra["fps"] == "50/1"
    info = conv.datasets()[0]
    assert info.fps == 10 and info.task_family == "egocentric"


def test_bad_rows_and_missing_frames(ego_fixture, tmp_path):
    rows = [_row("ok_0"), _row("bad_frames", start="x"), _row("reversed", start=115, stop=80),
            _row("gap", start=80, stop=116), _row("no_video", vid="P99_01"), _row("escape", vid="../P28_101"),
            _row("dense", start=80, stop=90)]
    ann = write_inputs(tmp_path, rows)
    _, _, items = convert(ann, frames=str(FRAMES))
    codes = {(it.episode_key, it.code) if isinstance(it, Rejected) else (it.episode_id, "ok") for it in items}
    codes = dict(codes)
    assert codes == {"epic/ok_0": "ok", "epic/bad_frames": "feature_mismatch", "epic/reversed": "feature_mismatch",
                     "epic/gap": "ok", "epic/no_video": "missing_frames", "epic/escape": "unsafe_path",
                     "epic/dense": "ok"}
    # at 50 Hz (every frame) the folder's gaps are missing frames
    _, _, items = convert(ann, frames=str(FRAMES), rate_hz="50")
    assert [it.code for it in items if isinstance(it, Rejected) and it.episode_key == "epic/ok_0"] == ["missing_frames"]


def make_mp4(path: Path, fps: int = 50) -> None:
    """An H.264 MP4 of frames 0..115 at ``fps``: the 8 real frames at their own indices, each held until the next
    (a real EPIC video starts at pts 0, and numbered frame n is at n / 50 s for this 50 fps video)."""
    import av
    from PIL import Image

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 456, 256, "yuv420p"
        s.time_base = Fraction(1, fps)
        s.options = {"crf": "12"}
        for f in range(FRAME_IDS[-1] + 1):
            src = max([x for x in FRAME_IDS if x <= f] or FRAME_IDS[:1])
            img = Image.open(FRAMES / "P28_101" / f"frame_{src:010d}.jpg").convert("RGB")
            frame = av.VideoFrame.from_image(img)
            frame.pts = f
            frame.time_base = Fraction(1, fps)
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def test_mp4_branch(ego_fixture, tmp_path):
    from PIL import Image

    videos = tmp_path / "videos"
    videos.mkdir()
    make_mp4(videos / "P28_101.MP4")
    ann = write_inputs(tmp_path / "csv", [_row(), _row("late", start=90, stop=105), _row("past", start=110, stop=200)])
    _, _, items = convert(ann, frames=str(videos), jpeg_quality="90")
    ep, late, past = items
    assert isinstance(ep, Episode) and isinstance(late, Episode), items
    assert isinstance(past, Rejected) and past.code == "missing_frames"
    validate_episode(ep, verify_images=True)
    assert ep.length == 8 and ep.extra["media"] == "video" and late.extra["frames"] == [90, 95, 100, 105]
    assert ep.timestamp_ns.tolist() == [f * 1_000_000_000 // 50 for f in FRAME_IDS]
    for f, data in zip(FRAME_IDS, ep.images["primary"]):
        assert data[:2] == b"\xff\xd8"
        got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
        want = np.asarray(Image.open(FRAMES / "P28_101" / f"frame_{f:010d}.jpg").convert("RGB"), np.float32)
        assert got.shape == want.shape and np.abs(got - want).mean() < 6.0
    assert late.images["primary"] == ep.images["primary"][2:6]
    assert ep.extra["video_frames"] == FRAME_IDS
    # decord picks the same frames (same bytes after the same JPEG encoder)
    _, _, items2 = convert(ann, frames=str(videos), jpeg_quality="90", decoder="decord")
    assert items2[0].images["primary"] == ep.images["primary"]


def test_mp4_storage_of_folder_frames(ego_fixture, tmp_path):
    """--opt storage=mp4: the segment becomes an H.264 clip, one frame per step, close to the source JPEGs."""
    import av

    ann = write_inputs(tmp_path, [_row()])
    _, _, (ep,) = convert(ann, frames=str(FRAMES), storage="mp4", gop="4")
    validate_episode(ep)
    assert "primary" not in ep.images and ep.videos["primary"].frame_index.tolist() == list(range(8))
    from PIL import Image

    with av.open(io.BytesIO(ep.videos["primary"].data)) as c:
        got = [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)]
    assert len(got) == 8
    for f, g in zip(FRAME_IDS, got):
        want = np.asarray(Image.open(FRAMES / "P28_101" / f"frame_{f:010d}.jpg").convert("RGB"), np.float32)
        assert g.shape == want.shape and np.abs(g - want).mean() < 6.0


@pytest.mark.slow
def test_ingest_end_to_end(ego_fixture, tmp_path):
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    rows = [_row(f"P28_101_{i}") for i in range(6)] + [_row("P28_101_missing", start=80, stop=400),
                                                      _row("P30_01_0", vid="P30_01")]
    ann = write_inputs(tmp_path / "csv", rows)
    out = tmp_path / "out"
    res = run_ingest(IngestConfig("epic_kitchens", str(ann), str(out),
                                  ConverterOptions(extra={"frames": str(FRAMES)}), executor="local"))
    led = res.ledger
    assert led["balanced"] and led["episodes_in"] == 8 and led["episodes_out"] == 6
    assert led["by_reason"] == {"missing_frames": 2}
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == [] and stats["rows"] == 6 * 8
    print(f"epic_kitchens end-to-end: {led['episodes_out'] / res.seconds:.1f} episodes/s ({res.seconds:.2f}s)")


@pytest.mark.slow
def test_ingest_mp4_storage_end_to_end(ego_fixture, ray_local, tmp_path):
    """--opt storage=mp4 through Ray: shard MP4s listed in the manifest, references decode to the source frames."""
    import pyarrow.parquet as pq
    from PIL import Image
    from vlaflow.media import FrameReader
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    rows = [_row(f"P28_101_{i}") for i in range(3)] + [_row("P28_101_late", start=100, stop=115)]
    ann = write_inputs(tmp_path / "csv", rows)
    out = tmp_path / "out"
    res = run_ingest(IngestConfig("epic_kitchens", str(ann), str(out),
                                  ConverterOptions(extra={"frames": str(FRAMES), "storage": "mp4", "gop": "4"})))
    assert res.ledger["balanced"] and res.ledger["episodes_out"] == 4
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == [] and stats["rows"] == 3 * 8 + 4
    videos = [v for s in res.manifest["shards"] for v in s["videos"]]
    assert videos and sum(v["frames"] for v in videos) == 28 and all(v["codec"] == "h264" for v in videos)
    table = pq.read_table(out / res.manifest["shards"][0]["path"])
    refs = table["videos"].combine_chunks().field("primary").to_pylist()
    assert table["images"].combine_chunks().field("primary").null_count == len(table)
    reader = FrameReader(str(out))
    src = {f: np.asarray(Image.open(FRAMES / "P28_101" / f"frame_{f:010d}.jpg").convert("RGB"), np.float32)
           for f in FRAME_IDS}
    eids = table["episode_id"].to_pylist()
    steps = table["step_index"].to_pylist()
    for eid, step, ref in zip(eids, steps, refs):
        frame = FRAME_IDS[step] if eid != "epic/P28_101_late" else [100, 105, 110, 115][step]
        got = reader.frame(None, ref).astype(np.float32)
        assert np.abs(got - src[frame]).mean() < 6.0, (eid, step)
    # tampering with a video is caught
    (out / videos[0]["path"]).write_bytes(b"\0" * 10)
    problems, _ = validate_output(str(out))
    assert any("sha256" in p for p in problems)
    # a manifest pointing outside the output folder is refused, not followed
    import json

    man = json.loads((out / "meta/manifest.json").read_text())
    man["shards"][0]["videos"][0]["path"] = "../../etc/passwd"
    (out / "meta/manifest.json").write_text(json.dumps(man))
    problems, _ = validate_output(str(out))
    assert any("leaves the output folder" in p for p in problems)
