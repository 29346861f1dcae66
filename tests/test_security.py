"""One test per security rule, over the project's own source (AST, not grep) and over names taken from data.

Behaviour tests elsewhere cover the converters: RoboTwin 1.0 pickles are quarantined without
``--opt trust_pickle=true`` (tests/converters/sim/test_robotwin.py); paths from data that escape their root are
quarantined ``unsafe_path`` (tests/converters/vln/test_r2r.py, test_frames.py, ego/test_epic.py,
ego/test_video_trajectory.py); video references outside the output are refused (pipelines/test_shard_videos_output.py).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vlaflow.schemas.names import is_safe_rel, safe_component

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("schemas", "converters", "tokenization", "pipelines", "media", "models", "jobs", "vlaflow", "benchmarks")
# The only pickle reads, each behind an explicit choice of the user: what it is and why it is allowed.
PICKLE_ALLOWED = {
    "converters/sim/robotwin.py": "RoboTwin 1.0 per-frame pickles, only with --opt trust_pickle=true",
    "benchmarks/ingest_rlds.py": "the benchmark's own cache file, written by the same script",
}


def _calls(rel_dirs=SOURCE_DIRS):
    for d in rel_dirs:
        for path in sorted((REPO / d).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    yield path.relative_to(REPO).as_posix(), node


def _name(func) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _kw(node: ast.Call, key: str):
    for k in node.keywords:
        if k.arg == key:
            return k.value
    return None


def test_the_scan_sees_the_code():
    names = {_name(n.func) for _, n in _calls()}
    assert {"yaml.safe_load", "np.load", "pickle.load"} <= names  # a scan that finds nothing proves nothing


def test_yaml_is_only_safe_loaded():
    bad = [(rel, n.lineno, _name(n.func)) for rel, n in _calls()
           if _name(n.func) in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all")]
    assert bad == []


def test_torch_load_always_weights_only():
    bad = []
    for rel, n in _calls():
        if _name(n.func) in ("torch.load",):
            flag = _kw(n, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                bad.append((rel, n.lineno))
    assert bad == []


def test_numpy_load_never_allows_pickle():
    bad = []
    for rel, n in _calls():
        if _name(n.func) in ("np.load", "numpy.load"):
            flag = _kw(n, "allow_pickle")
            if not (isinstance(flag, ast.Constant) and flag.value is False):
                bad.append((rel, n.lineno))
    assert bad == []


def test_pickle_only_where_the_user_opted_in():
    found = {rel for rel, n in _calls() if _name(n.func) in ("pickle.load", "pickle.loads", "pickle.Unpickler",
                                                            "dill.load", "cloudpickle.load", "joblib.load")}
    assert found <= set(PICKLE_ALLOWED), found - set(PICKLE_ALLOWED)
    gate = (REPO / "converters/sim/robotwin.py").read_text()
    assert "trust_pickle" in gate and "untrusted_pickle" in gate


def test_no_eval_or_exec_on_data():
    bad = [(rel, n.lineno) for rel, n in _calls() if _name(n.func) in ("eval", "exec", "__import__")]
    assert bad == []


@pytest.mark.parametrize("rel", ["../x", "a/../../b", "/etc/passwd", "a\\b", "C:/x", "", ".", "a//b", "a/./b"])
def test_relative_paths_from_data_that_escape_are_refused(rel):
    assert not is_safe_rel(rel)


@pytest.mark.parametrize("name", ["../../etc", "/abs", "a/b", "..", "x" * 500, "\x00nul", "ü/../"])
def test_names_from_data_become_one_bounded_component(name):
    safe = safe_component(name)
    assert "/" not in safe and "\\" not in safe and ".." not in safe and safe not in ("", ".")
    assert len(safe) <= 128
