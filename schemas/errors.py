"""Named errors. An ``EpisodeError`` sinks one episode (quarantined with its reason); others stop the run."""
from __future__ import annotations


class VlaflowError(Exception):
    """Base class: a user-facing error printed as one line by the CLI."""

    def __str__(self) -> str:
        # One line whatever a wrapped library's message looked like (pyarrow's end in a newline, h5py's span lines).
        text = super().__str__()
        if "\n" in text or "\r" in text:
            return "; ".join(x.strip() for x in text.splitlines() if x.strip())
        return text


class InputError(VlaflowError):
    """The input path is wrong, empty, or not in the converter's format."""


class SpecError(VlaflowError):
    """A dataset spec or embodiment YAML is invalid."""


class EpisodeError(VlaflowError):
    """One episode cannot be converted. ``code`` is the stable reason name recorded in the ledger."""

    code = "episode_error"

    def __init__(self, message: str, *, episode_key: str | None = None):
        super().__init__(message)
        self.episode_key = episode_key


class CorruptRecord(EpisodeError):
    """Framing or checksum failure (CRC32C mismatch, truncated record)."""

    code = "corrupt_record"


class TruncatedRecord(CorruptRecord):
    code = "truncated_record"


class FeatureMismatch(EpisodeError):
    """The record does not match the declared features (missing key, wrong size, bad dtype)."""

    code = "feature_mismatch"


class NonFiniteValue(EpisodeError):
    code = "non_finite_value"


class UndecodableImage(EpisodeError):
    code = "undecodable_image"


class InvariantViolation(EpisodeError):
    """The converted episode breaks a schema invariant (step order, flags, masks)."""

    code = "invariant_violation"


class UnknownRole(InvariantViolation):
    """A conversation turn's role is not one the schema (or the source format) knows."""

    code = "unknown_role"


class PlaceholderMismatch(InvariantViolation):
    """A conversation's ``<image>`` placeholders do not match the row's images in number."""

    code = "placeholder_mismatch"


class NonUtf8Text(EpisodeError):
    """Text that is not valid UTF-8 (undecodable bytes, lone surrogates from JSON escapes)."""

    code = "non_utf8_text"


class ConverterError(EpisodeError):
    """A converter raised something it did not name (a bug, or input it never expected): the episode, or what
    was left of its work unit, is quarantined with the exception's type and message, and the run goes on."""

    code = "converter_error"
