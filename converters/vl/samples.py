"""What both vision-language converters share: source turns → schema turns, images → camera roles, and the
one-step episode of a sample.

A sample is an episode of one row: its images fill ``VL_IMAGE_ROLES`` in placeholder order, its conversation
the ``conversation`` column; action, state and trajectory are fully masked, the embodiment is ``no_body``.
Answers are kept verbatim: grounding boxes and points stay text in the source's own convention.
"""
from __future__ import annotations

import posixpath

import numpy as np

from vlaflow.schemas import (
    IMAGE_PLACEHOLDER,
    VISION_LANGUAGE,
    VL_IMAGE_ROLES,
    DatasetInfo,
    FeatureMismatch,
    NonUtf8Text,
    PlaceholderMismatch,
    UnknownRole,
)
from vlaflow.schemas.names import is_safe_rel

from ..vln.errors import UnsafePath
from .errors import MissingImage, NoAnswer, TooManyImages

EMBODIMENT = "no_body"
SAMPLE_FPS = 1  # a sample has one row and no clock; its timestamp is 0
# Source role names → schema roles: LLaVA/ShareGPT ``from`` (human, gpt) and chat ``role`` (user, assistant).
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def text_of(value, what: str) -> str:
    """A source text value as str: bytes must be UTF-8, str must encode as UTF-8 (no lone surrogates)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise NonUtf8Text(f"{what}: not UTF-8 ({err.reason} at byte {err.start})") from None
    if not isinstance(value, str):
        raise FeatureMismatch(f"{what}: expected text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise NonUtf8Text(f"{what}: not valid UTF-8 ({err.reason} at character {err.start})") from None
    return value


def map_turns(raw, where: str = "conversations") -> list[dict]:
    """Source turns — ``{"from": "human"|"gpt", "value": ...}`` (LLaVA) or ``{"role", "content"}`` (chat) —
    → ``[{"role": user|assistant|system, "text": str}]``; an unknown role is ``UnknownRole``."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise NoAnswer(f"{where}: expected a non-empty list of turns, got {type(raw).__name__ if raw is not None else None}")
    turns = []
    for k, turn in enumerate(raw):
        if not isinstance(turn, dict):
            raise FeatureMismatch(f"{where}[{k}]: a turn must be an object, got {type(turn).__name__}")
        who = turn.get("from", turn.get("role"))
        body = turn.get("value", turn.get("content"))
        if isinstance(who, (bytes, bytearray)):
            who = text_of(who, f"{where}[{k}].from")
        role = ROLE_NAMES.get(who.strip().lower()) if isinstance(who, str) else None
        if role is None:
            raise UnknownRole(f"{where}[{k}]: role {who!r} is not one of {', '.join(sorted(ROLE_NAMES))}")
        turns.append({"role": role, "text": text_of(body, f"{where}[{k}].value")})
    if not any(t["role"] == "assistant" and t["text"].strip() for t in turns):
        raise NoAnswer(f"{where}: no non-empty assistant turn")
    return turns


def placeholders(turns: list[dict]) -> int:
    return sum(t["text"].count(IMAGE_PLACEHOLDER) for t in turns)


def check_images(turns: list[dict], n_images: int, *, prepend: bool = False) -> list[dict]:
    """The placeholder count must equal the image count. ``prepend``: a source whose text never shows images
    (tables of question/answer) gets the placeholders before its first user turn, LLaVA's layout."""
    if n_images > len(VL_IMAGE_ROLES):
        raise TooManyImages(f"{n_images} images; a row holds at most {len(VL_IMAGE_ROLES)} ({', '.join(VL_IMAGE_ROLES)})")
    found = placeholders(turns)
    if prepend and found == 0 and n_images:
        first = next((i for i, t in enumerate(turns) if t["role"] == "user"), None)
        if first is None:
            raise PlaceholderMismatch(f"{n_images} image(s) but no user turn to show them in")
        turns = [dict(t) for t in turns]
        turns[first]["text"] = (IMAGE_PLACEHOLDER + "\n") * n_images + turns[first]["text"]
        found = n_images
    if found != n_images:
        raise PlaceholderMismatch(f"{found} {IMAGE_PLACEHOLDER} placeholder(s) for {n_images} image(s)")
    return turns


def instruction_of(turns: list[dict]) -> str:
    """The first user turn without its placeholders: the row's ``instruction`` (cards, browsing, filters)."""
    text = next((t["text"] for t in turns if t["role"] == "user"), "")
    return " ".join(text.replace(IMAGE_PLACEHOLDER, " ").split())


def image_path(rel, root: str, where: str) -> str:
    """An image path from the data, inside ``root`` (no absolute paths, drive letters, '..', URIs)."""
    if not isinstance(rel, str):
        raise FeatureMismatch(f"{where}: an image path must be text, got {type(rel).__name__}")
    clean = rel if rel.startswith("/") else "/".join(p for p in rel.strip().split("/") if p not in ("", "."))
    if "://" in rel or "\x00" in rel or not is_safe_rel(clean):
        raise UnsafePath(f"{where}: image path {rel[:120]!r} is not a plain relative path inside the image folder")
    return posixpath.join(root, clean)


def read_image(src, path: str, rel: str) -> bytes:
    try:
        return src.read_bytes(path)
    except OSError as err:  # FileNotFoundError, pyarrow's IO errors
        raise MissingImage(f"image {rel!r} not found in the image folder ({type(err).__name__})") from None


def vl_info(converter, name: str, source_uri: str, license: str, notes: list[str]) -> DatasetInfo:
    return DatasetInfo(
        name=name, task_family=VISION_LANGUAGE, embodiment=EMBODIMENT, fps=SAMPLE_FPS, license=license,
        source_uri=source_uri, converter=converter.name, converter_version=converter.version,
        cameras={role: f"image {i} (placeholder {i + 1})" for i, role in enumerate(VL_IMAGE_ROLES)},
        notes=["one row per sample: images in primary/secondary/tertiary in placeholder order, the text target "
               "in `conversation` (roles user/assistant/system, <image> placeholders kept); action, state and "
               "trajectory fully masked",
               "answers verbatim: grounding boxes / points stay text in the source's own convention"] + notes)


def sample_episode(converter, key: str, turns: list[dict], images: list[bytes], *, split: str, source_file: str,
                   source_index: int, extra: dict):
    """The one-row episode of a checked sample (``check_images`` first)."""
    frames = {role: [data] for role, data in zip(VL_IMAGE_ROLES, images)}
    instruction = instruction_of(turns)
    return converter.make_episode(
        key, timestamp_ns=np.zeros(1, np.int64), instruction=instruction,
        instructions=[instruction] if instruction else [], images=frames, conversation=[turns], split=split,
        source_file=source_file, source_index=source_index, extra=extra)
