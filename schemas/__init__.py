"""The unified schema: slots, columns, conventions, embodiments, episodes. Depends on nothing of ours."""
from .arrow import episodes_schema, read_schema_metadata, schema_metadata, step_schema
from .columns import CAMERA_ROLES, TASK_FAMILIES, Col, EpCol
from .conventions import DatasetInfo, parse_fps, step_timestamps_ns
from .embodiment import Embodiment, get_embodiment, register_embodiment_file, registry, render_prompt
from .episode import Episode, VideoClip, episode_row, episode_to_table, episodes_table, episodes_to_table
from .errors import (CorruptRecord, EpisodeError, FeatureMismatch, InputError, InvariantViolation,
                     NonFiniteValue, SpecError, TruncatedRecord, UndecodableImage, VlaflowError)
from .slots import ACTION, SCHEMA_VERSION, STATE, TRAJ_HORIZON, TRAJECTORY, Layout, Slot
from .validate import check_image_bytes, validate_episode

__all__ = [
    "ACTION", "STATE", "TRAJECTORY", "TRAJ_HORIZON", "VideoClip", "SCHEMA_VERSION", "Layout", "Slot", "Col", "EpCol", "CAMERA_ROLES",
    "TASK_FAMILIES", "DatasetInfo", "parse_fps", "step_timestamps_ns", "Embodiment", "get_embodiment",
    "register_embodiment_file", "registry", "render_prompt", "Episode", "episode_row",
    "episode_to_table", "episodes_to_table", "episodes_table", "step_schema", "episodes_schema", "schema_metadata",
    "read_schema_metadata", "validate_episode", "check_image_bytes", "VlaflowError", "InputError",
    "SpecError", "EpisodeError", "CorruptRecord", "TruncatedRecord", "FeatureMismatch",
    "NonFiniteValue", "UndecodableImage", "InvariantViolation",
]
