"""Shared HDF5 helpers for the simulation-log converters: open with named errors, find files,
classify a file's layout (what ``--converter auto`` sniffs), list and size demos, read attrs.

Layouts (``classify``):
- ``robomimic``       robomimic post-processed file: ``data`` (attr ``env_args``) / ``demo_N`` / ``actions``
- ``robosuite_raw``   robosuite ``collect_human_demonstrations`` file: ``data`` attrs ``env``/``env_info``
- ``libero``          LIBERO ``create_dataset.py`` file: ``data`` attrs ``problem_info``/``bddl_file_name``
- ``robotwin2``       RoboTwin 2.0 episode: ``joint_action/`` + ``observation/``
- ``robotwin_xpl``    RoboTwin XPolicyLab v1.0 episode: ``data_format_version`` + ``state/`` + ``action/``
- ``robotwin_pkl``    RoboTwin 1.0 episode folder of per-frame ``<i>.pkl`` (never opened to sniff)
- ``maniskill``       ManiSkill ``trajectory*.h5`` with ``traj_<id>`` groups (+ same-name ``.json``)
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlaflow.schemas import InputError
from vlaflow.schemas.names import natural_key

from .errors import TruncatedFile, UnreadableFile

HDF5_EXTS = (".hdf5", ".h5", ".he5")
MAX_SCAN_FILES = 100_000

def open_h5(path: str | Path):
    """Open read-only; a truncated or non-HDF5 file raises a named ``EpisodeError``."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = str(err)
        if "truncated" in msg.lower() or "eof" in msg.lower():
            raise TruncatedFile(f"{Path(path).name}: truncated HDF5 ({msg.splitlines()[0][:200]})") from None
        raise UnreadableFile(f"{Path(path).name}: not readable as HDF5 ({msg.splitlines()[0][:200]})") from None


def attr_str(obj, key: str, default: str = "") -> str:
    v = obj.attrs.get(key, None) if obj is not None else None
    if v is None:
        return default
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO" and v.size == 1:
        x = v.reshape(-1)[0]
        return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
    return str(v)


def attr_json(obj, key: str) -> dict:
    text = attr_str(obj, key)
    if not text:
        return {}
    try:
        out = json.loads(text)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {"value": out}


def plain(v):
    """An HDF5 attr value as JSON-able Python (bytes decoded, small arrays as lists)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            return [plain(x) for x in v.reshape(-1).tolist()]
        return v.tolist() if v.size <= 64 else f"<array {v.dtype} {list(v.shape)}>"
    if isinstance(v, np.generic):
        return v.item()
    return v


def storage_bytes(group) -> int:
    """Bytes a group's datasets occupy in the file (for packing work units), metadata only."""
    import h5py

    total = 0

    def visit(_name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            try:
                total += int(obj.id.get_storage_size())
            except Exception:  # external/virtual datasets: count their logical size
                total += int(obj.size * obj.dtype.itemsize)

    group.visititems(visit)
    return total


def flat_datasets(group, prefix: str = "") -> dict:
    """name → h5py.Dataset for every dataset under ``group`` (names relative, '/'-joined)."""
    import h5py

    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[prefix + name] = obj

    group.visititems(visit)
    return out


def demo_names(data_group, prefix: str = "demo") -> list[str]:
    import h5py

    return sorted((k for k in data_group if k.startswith(prefix) and isinstance(data_group[k], h5py.Group)),
                  key=natural_key)


# -- layout classification ------------------------------------------------------------------
def _first_demo(data):
    names = demo_names(data)
    return data[names[0]] if names else None


def classify_h5(f, path: Path) -> str | None:
    import h5py

    keys = set(f.keys())
    if "data_format_version" in f.attrs or "data_format_version" in keys:
        if {"state", "action"} & keys or "vision" in keys:
            return "robotwin_xpl"
    if "joint_action" in keys and isinstance(f["joint_action"], h5py.Group) and "observation" in keys:
        return "robotwin2"
    if any(k.startswith("traj_") for k in keys):
        return "maniskill"
    if "data" in keys and isinstance(f["data"], h5py.Group):
        data = f["data"]
        if any(k in data.attrs for k in ("problem_info", "bddl_file_name", "macros_image_convention")):
            return "libero"
        demo = _first_demo(data)
        if demo is not None and "obs" in demo and "agentview_rgb" in demo["obs"]:
            return "libero"
        if "env_args" in data.attrs:
            return "robomimic"
        if "env_info" in data.attrs or "env" in data.attrs:
            return "robosuite_raw"
        if demo is not None and "actions" in demo:
            return "robomimic"
    return None


def classify_file(path: Path) -> str | None:
    """The layout of one file, or None (not HDF5, unreadable, or no known layout)."""
    if path.suffix.lower() not in HDF5_EXTS:
        return None
    try:
        f = open_h5(path)
    except Exception:
        return None
    try:
        return classify_h5(f, path)
    except Exception:
        return None
    finally:
        f.close()


def is_pickle_episode(path: Path) -> bool:
    """RoboTwin 1.0: a folder of per-frame ``0.pkl, 1.pkl, ...`` (names only; nothing is unpickled)."""
    if not path.is_dir():
        return False
    try:
        return any(p.suffix == ".pkl" and p.stem.isdigit() for p in path.iterdir())
    except OSError:
        return False


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute path of the file (or pickle-episode folder)
    rel: str  # path relative to the input, '/'-joined (for episode ids)
    layout: str | None  # classify_* result; None = unreadable or unknown


def scan_input(input_path: str) -> list[SourceFile]:
    """Every candidate source under ``input_path`` (a file or a folder, recursively), sorted.

    Candidates: files with an HDF5 extension and RoboTwin 1.0 pickle-episode folders. Hidden
    entries (``.cache`` of RoboTwin's collector, ``.git``...) are skipped.
    """
    root = Path(input_path)
    if not root.exists():
        raise InputError(f"input not found: {input_path}")
    if root.is_file():
        return [SourceFile(str(root), root.name, classify_file(root))]
    if is_pickle_episode(root):
        return [SourceFile(str(root), root.name, "robotwin_pkl")]
    out: list[SourceFile] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(d.iterdir(), key=lambda p: natural_key(p.name))
        except OSError:
            continue
        for p in entries:
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if is_pickle_episode(p):
                    out.append(SourceFile(str(p), p.relative_to(root).as_posix(), "robotwin_pkl"))
                else:
                    stack.append(p)
            elif p.suffix.lower() in HDF5_EXTS:
                out.append(SourceFile(str(p), p.relative_to(root).as_posix(), None))
            if len(out) > MAX_SCAN_FILES:
                raise InputError(f"{input_path}: more than {MAX_SCAN_FILES} candidate files")
    out.sort(key=lambda s: natural_key(s.rel))
    return out


def classify_input(input_path: str) -> str | None:
    """The layout of the first recognizable source under ``input_path`` (what ``sniff`` uses):
    one answer per input, so exactly one sim converter claims it."""
    try:
        files = scan_input(input_path)
    except InputError:
        return None
    for i, sf in enumerate(files):
        layout = sf.layout if sf.layout else classify_file(Path(sf.path))
        if layout:
            return layout
        if i >= 64:  # a folder of 64 unrecognizable files is not ours
            break
    return None


def classified(files: list[SourceFile]) -> list[SourceFile]:
    return [sf if sf.layout else SourceFile(sf.path, sf.rel, classify_file(Path(sf.path))) for sf in files]


# -- MuJoCo model: where a joint's value sits in robosuite's flattened state -----------------------
_QPOS_WIDTH = {"free": 7, "ball": 4, "hinge": 1, "slide": 1}


def mjcf_qpos_index(xml: str) -> tuple[dict[str, int], int] | None:
    """joint name → qpos address, and nq, from an inline MJCF model (robosuite ``model_file``).

    MuJoCo lays qpos out in the kinematic tree's depth-first body order, which is the document order
    of ``<joint>``/``<freejoint>`` elements under ``<worldbody>`` in a compiled (include-free) model.
    Returns None when ``xml`` is not inline XML (robosuite 1.0 stores a file name) or uses
    defaults/classes that could change a joint's type.
    """
    if not xml or not xml.lstrip().startswith("<"):
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    wb = root.find("worldbody")
    if wb is None:
        return None
    default_type = "hinge"
    dflt = root.find("default")
    if dflt is not None:
        j = dflt.find("joint")
        if j is not None and j.get("type"):
            default_type = j.get("type")
    index, addr = {}, 0
    for el in wb.iter():
        if el.tag == "freejoint":
            jtype = "free"
        elif el.tag == "joint":
            if el.get("class"):
                return None  # a class default could change the type: do not guess
            jtype = el.get("type", default_type)
        else:
            continue
        if jtype not in _QPOS_WIDTH:
            return None
        name = el.get("name")
        if name:
            index[name] = addr
        addr += _QPOS_WIDTH[jtype]
    return index, addr
