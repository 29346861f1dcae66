"""Inputs of the file-per-episode video converters (egodex, video_trajectory): local root, episode keys."""
from __future__ import annotations

from pathlib import Path

from vlaflow.media.fs import resolve
from vlaflow.schemas import InputError
from vlaflow.schemas.names import safe_component


def local_root(input_path: str, who: str) -> Path:
    """HDF5 and decord need local files: a path or ``file://`` URI is read in place; another URI or a
    missing path is a one-line input error."""
    fs, path = resolve(input_path)
    if type(fs).__name__ != "LocalFileSystem":
        raise InputError(f"{input_path}: {who} reads local files; copy or mount them first")
    root = Path(path) if "://" in input_path else Path(input_path)
    if not root.exists():
        raise InputError(f"{input_path}: no such file or folder")
    return root


def episode_key(root: Path, path: Path, dataset: str) -> str:
    """``<dataset>/<relative path without suffix>``, each component a plain name."""
    rel = path.relative_to(root).with_suffix("").parts if path != root else (path.stem,)
    return "/".join([dataset] + [safe_component(x) for x in rel])
