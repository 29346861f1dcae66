"""2D hand tracking (optional mediapipe extra): handedness for non-mirrored cameras, one decode feeding both
storage and tracking, and a real egocentric video through video_trajectory with --opt hands=mediapipe."""
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vlaflow.converters.base import ConverterOptions
from vlaflow.converters.ego.hands2d import TapDecoder, assign_sides
from vlaflow.media import ClipEncoder, PyAVDecoder, probe

REPO = Path(__file__).resolve().parents[3]
FRAMES = Path(os.environ.get("VLAFLOW_SHARED", REPO.parent / "shared")) / "fixtures/ego/epic_fields_frames/P28_101"


def test_handedness_is_swapped_for_world_facing_cameras():
    assert assign_sides(["Left", "Right"], mirrored=False) == ["right", "left"]
    assert assign_sides(["Left", "Right"], mirrored=True) == ["left", "right"]


def test_tap_sees_every_decoded_frame(tmp_path):
    enc = ClipEncoder(Fraction(10), "h264", gop=4)
    for i in range(8):
        enc.add(np.full((48, 64, 3), 20 * i + 10, np.uint8))
    (tmp_path / "v.mp4").write_bytes(enc.finish())
    seen = []
    tap = TapDecoder(PyAVDecoder(str(tmp_path / "v.mp4"), probe(str(tmp_path / "v.mp4"))), lambda a: seen.append(a.mean()))
    out = [i for i, _ in tap.frames([1, 4, 6])]
    assert out == [1, 4, 6] and [round((m - 10) / 20) for m in seen] == [1, 4, 6]


def test_mediapipe_on_a_real_egocentric_video(tmp_path):
    pytest.importorskip("mediapipe", reason="optional extra vlaflow[hands] not installed")
    if not FRAMES.is_dir():
        pytest.skip(f"real EPIC frames not found under {FRAMES}")
    from PIL import Image
    from vlaflow.converters.ego import VideoTrajectoryConverter
    from vlaflow.schemas import TRAJECTORY, validate_episode

    enc = ClipEncoder(Fraction(10), "h264", gop=4)
    for p in sorted(FRAMES.glob("frame_*.jpg")):
        enc.add(np.asarray(Image.open(p).convert("RGB")))
    (tmp_path / "kitchen.mp4").write_bytes(enc.finish())
    conv = VideoTrajectoryConverter(str(tmp_path), ConverterOptions(extra={"hands": "mediapipe",
                                                                           "instruction": "tidy the counter"}))
    (ep,) = [it for u in conv.work_units(1 << 26) for it in conv.read(u)]
    validate_episode(ep)
    assert ep.length == 8 and ep.instruction == "tidy the counter" and ep.extra["hand_tracker"] == "mediapipe==0.10.14"
    # these frames show a counter and a floor, no hand: nothing may be invented
    for side in ("left", "right"):
        a, b = TRAJECTORY.range(f"{side}_hand.wrist_uv")
        assert not ep.trajectory_mask[..., a:b].any()


def test_mediapipe_fills_epic_segments(tmp_path):
    """EPIC narrations + 2D hand traces: the extractor gives segments trajectory targets (image space)."""
    pytest.importorskip("mediapipe", reason="optional extra vlaflow[hands] not installed")
    if not FRAMES.is_dir():
        pytest.skip(f"real EPIC frames not found under {FRAMES}")
    from vlaflow.converters.ego import EpicKitchensConverter
    from vlaflow.schemas import TRAJECTORY, validate_episode

    ann = tmp_path / "EPIC_100_x.csv"
    ann.write_text("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
                   "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
                   "P28_101_0,P28,P28_101,00:00:01.7,00:00:01.60,00:00:02.30,80,115,open drawer,open,3,drawer,8,"
                   "['drawer'],[8]\n")
    conv = EpicKitchensConverter(str(ann), ConverterOptions(extra={"frames": str(FRAMES.parent), "fps": "50",
                                                                   "hands": "mediapipe", "horizon": "4"}))
    (ep,) = [it for u in conv.work_units(1 << 26) for it in conv.read(u)]
    validate_episode(ep)
    assert ep.trajectory is not None and ep.trajectory.shape[0] == 8 and ep.extra["hand_tracker"]
    a, b = TRAJECTORY.range("right_hand.fingertips_uv")
    assert not ep.trajectory_mask[..., a:b].any()  # no hand in these frames; none invented
