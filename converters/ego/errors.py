"""Named reasons an egocentric-video episode is quarantined (subclasses of the schema's ``EpisodeError``)."""
from __future__ import annotations

from vlaflow.schemas import EpisodeError, FeatureMismatch


class MissingFrames(EpisodeError):
    """A segment's frames are absent: no frame folder / video, a frame file missing, or frames past the video's end."""

    code = "missing_frames"


class BadSegment(FeatureMismatch):
    """An annotation row that cannot describe a segment (unparseable frames, stop < start)."""

    code = "feature_mismatch"


class MissingVideoInfo(EpisodeError):
    """No fps for the segment's video (not in the video-info CSV, no ``--opt fps``, no stream rate)."""

    code = "missing_video_info"


class UnsafePath(EpisodeError):
    """A ``video_id`` / ``narration_id`` that is not a plain name (would leave the media root)."""

    code = "unsafe_path"


class PoseMismatch(EpisodeError):
    """Pose frames and video frames disagree beyond the tolerance (``--opt max_frame_mismatch``)."""

    code = "pose_frame_mismatch"


class MissingIntrinsics(EpisodeError):
    """No camera intrinsics: projections cannot be computed."""

    code = "missing_intrinsics"


class NonFinitePose(EpisodeError):
    """NaN / inf in the camera pose (a hand joint's NaN is masked instead)."""

    code = "non_finite_value"
