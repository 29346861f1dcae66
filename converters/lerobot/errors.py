"""Named reasons a LeRobot episode is quarantined (each an ``EpisodeError`` of ``vlaflow.schemas.errors``)."""
from __future__ import annotations

from vlaflow.schemas.errors import CorruptRecord, EpisodeError, FeatureMismatch, TruncatedRecord


class MissingData(FeatureMismatch):
    """The episode's data parquet file is absent, or holds none of its rows."""

    code = "missing_data"


class UnreadableData(CorruptRecord):
    """A data parquet file that pyarrow cannot read."""

    code = "unreadable_data"


class EpisodeLengthMismatch(FeatureMismatch):
    """The episode's ``length`` (or its from/to index range) disagrees with the rows in the data file."""

    code = "episode_length_mismatch"


class IndexMismatch(FeatureMismatch):
    """The rows' global ``index`` is not the episode's ``dataset_from_index .. dataset_to_index``, or their
    ``frame_index`` is not 0..length-1."""

    code = "index_mismatch"


class TimestampMismatch(FeatureMismatch):
    """A row's ``timestamp`` is not ``frame_index / fps`` (LeRobot's own sync check, tolerance 1e-4 s)."""

    code = "timestamp_mismatch"


class MissingVideo(FeatureMismatch):
    """The episode's video file for a camera is absent (or its path leaves the dataset folder)."""

    code = "missing_video"


class ShortVideo(TruncatedRecord):
    """A video without a frame for every step of the episode (it ends before ``to_timestamp``)."""

    code = "short_video"


class MissingImage(FeatureMismatch):
    """An image feature's cell without bytes and without a readable file."""

    code = "missing_image"


class MissingEpisodeMetadata(EpisodeError):
    """An episode the metadata lists with fields missing or unusable (no length, no data file index...)."""

    code = "missing_episode_metadata"


class UnlistedEpisode(FeatureMismatch):
    """Rows of an episode index the metadata does not list (an episodes table out of step with the data)."""

    code = "unlisted_episode"
