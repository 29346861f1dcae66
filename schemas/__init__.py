"""The unified schema: slots, columns, conventions, embodiments, episodes. Depends on nothing of ours."""
from .arrow import episodes_schema, read_schema_metadata, schema_metadata, step_schema
from .columns import CAMERA_ROLES, TASK_FAMILIES, Col, EpCol
from .conventions import DatasetInfo, parse_fps, step_timestamps_ns
from .embodiment import (
                     Embodiment,
                     EmbodimentRegistry,
                     get_embodiment,
                     load_embodiment_files,
                     render_prompt,
)
from .episode import (
                     Episode,
                     VideoClip,
                     episode_row,
                     episode_to_table,
                     episodes_table,
                     episodes_to_table,
)
from .errors import (
                     CorruptRecord,
                     EpisodeError,
                     FeatureMismatch,
                     InputError,
                     ConverterError,
                     InvariantViolation,
                     NonFiniteValue,
                     SpecError,
                     TruncatedRecord,
                     UndecodableImage,
                     VlaflowError,
)
from .slots import ACTION, SCHEMA_VERSION, STATE, TRAJ_HORIZON, TRAJECTORY, Layout, Slot
from .validate import check_image_bytes, validate_episode

__all__ = [
                     "ACTION",
                     "CAMERA_ROLES",
                     "SCHEMA_VERSION",
                     "STATE",
                     "TASK_FAMILIES",
                     "TRAJECTORY",
                     "TRAJ_HORIZON",
                     "Col",
                     "CorruptRecord",
                     "DatasetInfo",
                     "Embodiment",
                     "EmbodimentRegistry",
                     "EpCol",
                     "Episode",
                     "EpisodeError",
                     "FeatureMismatch",
                     "InputError",
                     "ConverterError",
                     "InvariantViolation",
                     "Layout",
                     "NonFiniteValue",
                     "Slot",
                     "SpecError",
                     "TruncatedRecord",
                     "UndecodableImage",
                     "VideoClip",
                     "VlaflowError",
                     "check_image_bytes",
                     "episode_row",
                     "episode_to_table",
                     "episodes_schema",
                     "episodes_table",
                     "episodes_to_table",
                     "get_embodiment",
                     "load_embodiment_files",
                     "parse_fps",
                     "read_schema_metadata",
                     "render_prompt",
                     "schema_metadata",
                     "step_schema",
                     "step_timestamps_ns",
                     "validate_episode",
]
