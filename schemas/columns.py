"""Column names and closed vocabularies, in one place so no stage spells a column by hand."""
from __future__ import annotations


class Col:
    DATASET = "dataset"
    EPISODE_ID = "episode_id"
    STEP_INDEX = "step_index"
    TIMESTAMP_NS = "timestamp_ns"
    TASK_FAMILY = "task_family"
    EMBODIMENT = "embodiment"
    EMBODIMENT_PROMPT = "embodiment_prompt"
    INSTRUCTION = "instruction"
    LANGUAGE = "language"
    IMAGES = "images"
    STATE = "state"
    STATE_MASK = "state_mask"
    STATE_RAW = "state_raw"
    ACTION = "action"
    ACTION_MASK = "action_mask"
    ACTION_RAW = "action_raw"
    ACTION_VALID = "action_valid"
    IS_FIRST = "is_first"
    IS_LAST = "is_last"
    IS_TERMINAL = "is_terminal"
    REWARD = "reward"
    DISCOUNT = "discount"
    TRAJECTORY = "trajectory"  # [TRAJ_HORIZON, TRAJECTORY.width] future trace, null where a row has none
    TRAJECTORY_MASK = "trajectory_mask"
    VIDEOS = "videos"  # per camera role: frame reference (MP4 path under the output root, frame index)
    CONVERSATION = "conversation"  # vision_language rows: [{role, text}] turns, null on every other row


class EpCol:
    DATASET = "dataset"
    EPISODE_ID = "episode_id"
    LENGTH = "length"
    INSTRUCTION = "instruction"
    INSTRUCTIONS = "instructions"
    LANGUAGE = "language"
    EMBODIMENT = "embodiment"
    SPLIT = "split"
    SOURCE_FILE = "source_file"
    SOURCE_INDEX = "source_index"
    SHARD_FILE = "shard_file"
    ROW_GROUP = "row_group"  # the shard row group holding the whole episode
    EXTRA = "extra"


TASK_FAMILIES = ("manipulation", "navigation", "egocentric", "trajectory", "vision_language")
VISION_LANGUAGE = "vision_language"  # images + a conversation, no action, state or trajectory

# Roles of a conversation turn (the chat-template roles); sources' own names ("human", "gpt") are mapped to
# these by their converter.
CONVERSATION_ROLES = ("system", "user", "assistant")
# Where a turn's text shows an image. The k-th placeholder of a row's conversation is the k-th image of
# ``VL_IMAGE_ROLES`` present on the row (images or videos), so placeholders == images, always.
IMAGE_PLACEHOLDER = "<image>"

# Camera roles, not source keys. Depth streams are their own roles.
CAMERA_ROLES = ("primary", "secondary", "tertiary", "wrist", "wrist_left", "wrist_right",
                "depth_primary", "depth_secondary", "depth_wrist")

# Camera roles that carry a vision-language row's images, in placeholder order (the RGB scene roles: the
# features stage and the model see them like any camera).
VL_IMAGE_ROLES = ("primary", "secondary", "tertiary")

IMAGE_TRANSFORMS = ("none", "flip_vertical", "flip_horizontal", "rotate_180", "bgr_to_rgb")
