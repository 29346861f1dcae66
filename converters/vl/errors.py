"""Named reasons a vision-language sample is quarantined (besides the schema's ``unknown_role``,
``placeholder_mismatch`` and ``non_utf8_text``)."""
from __future__ import annotations

from vlaflow.schemas import EpisodeError


class MissingImage(EpisodeError):
    """An image the sample names is not in the image folder (or cannot be read)."""

    code = "missing_image"


class TooManyImages(EpisodeError):
    """More images than the vision-language camera roles (``VL_IMAGE_ROLES``) can hold."""

    code = "too_many_images"


class NoAnswer(EpisodeError):
    """A sample without a non-empty assistant turn (nothing to train on), or without any turns."""

    code = "no_answer"
