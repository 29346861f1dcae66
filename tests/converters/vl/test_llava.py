"""The ``llava`` converter on generated LLaVA-format JSON / JSON-lines inputs (``conftest.py``)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vl import LLaVAConverter
from vlaflow.schemas import VL_IMAGE_ROLES, Episode, InputError, episodes_to_table, validate_episode
from vlaflow.schemas.invariants import check_step_table

from .conftest import BAD_REASONS, GOOD, write_llava


def read_all(conv, target_bytes=1 << 30):
    items = [x for u in conv.work_units(target_bytes) for x in conv.read(u)]
    return [x for x in items if isinstance(x, Episode)], [x for x in items if isinstance(x, Rejected)]


@pytest.mark.parametrize("jsonl", [False, True])
def test_samples_become_validated_vision_language_rows(tmp_path, jsonl):
    path, want = write_llava(tmp_path / "llava", jsonl=jsonl)
    conv = LLaVAConverter(str(path))
    eps, rejected = read_all(conv)
    assert len(eps) == GOOD
    by_id = {ep.extra["id"]: ep for ep in eps}
    assert set(by_id) == set(want)
    for sid, ep in by_id.items():
        validate_episode(ep, verify_images=True)
        assert ep.length == 1 and ep.task_family == "vision_language" and ep.embodiment == "no_body"
        assert ep.embodiment_prompt.startswith("No body:")
        assert not ep.action_mask.any() and not ep.state_mask.any() and not ep.action_valid.any()
        assert ep.trajectory is None and ep.split == "llava_v1_5_mix665k"
        # the source's bytes, untouched, in placeholder order
        got = [ep.images[r][0] for r in VL_IMAGE_ROLES if r in ep.images]
        assert got == want[sid]
    bus = by_id["000000033471"].conversation[0]
    assert [t["role"] for t in bus] == ["user", "assistant", "user", "assistant"]
    assert bus[0]["text"] == "<image>\nWhat are the colors of the bus in the image?"
    assert by_id["000000033471"].instruction == "What are the colors of the bus in the image?"
    # grounding answers stay text in LLaVA's convention (normalized [x1, y1, x2, y2])
    assert by_id["000000580957"].conversation[0][1]["text"] == "[0.0, 0.23, 0.42, 0.99]"
    assert by_id["nlvr2_dev_0"].conversation[0][0]["text"].count("<image>") == 2
    assert set(by_id["nlvr2_dev_0"].images) == {"primary", "secondary"}
    assert by_id["i6IyJda_0"].images == {} and "Ünïcödé ✓" in by_id["i6IyJda_0"].conversation[0][1]["text"]
    assert [t["role"] for t in by_id["1001"].conversation[0]] == ["system", "user", "assistant"]
    reasons = Counter(r.code for r in rejected)
    assert reasons == Counter(BAD_REASONS) + Counter({"non_utf8_text": 1} if jsonl else {})
    assert all("/" in r.episode_key and r.source.endswith(tuple(f"#{i}" for i in range(20))) for r in rejected)
    # one table of all good rows passes the invariants `vlaflow validate` checks
    table = episodes_to_table(eps)
    assert check_step_table(table) == []
    assert len({ep.episode_id for ep in eps}) == GOOD


def test_small_units_read_the_same_rows(tmp_path):
    path, _ = write_llava(tmp_path / "llava")
    conv = LLaVAConverter(str(path))
    whole, _ = read_all(conv)
    units = conv.work_units(2000)
    assert len(units) > 2  # samples with images cost their image bytes
    pieces, rejected = read_all(LLaVAConverter(str(path)), 2000)
    assert [e.episode_id for e in pieces] == [e.episode_id for e in whole]
    assert len(pieces) + len(rejected) == 10


def test_image_folder_option_and_folder_input(tmp_path):
    path, want = write_llava(tmp_path / "images")
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "llava_v1_5_mix665k.json").write_text(path.read_text())
    with pytest.raises(InputError, match="not a folder"):
        LLaVAConverter(str(ann), ConverterOptions(extra={"image_folder": str(tmp_path / "nope")}))
    conv = LLaVAConverter(str(ann), ConverterOptions(extra={"image_folder": str(tmp_path / "images"),
                                                            "dataset": "llava_mix"}))
    eps, rejected = read_all(conv)
    assert len(eps) == GOOD and eps[0].dataset == "llava_mix" and eps[0].episode_id.startswith("llava_mix/")
    info = conv.datasets()[0]
    assert info.task_family == "vision_language" and info.embodiment == "no_body"
    assert LLaVAConverter.sniff(str(ann)) and not LLaVAConverter.sniff(str(tmp_path / "images" / "coco"))


def test_a_file_that_is_not_json_is_one_named_rejection(tmp_path):
    (tmp_path / "bad.json").write_bytes(b'[{"id": 1, "conversations": [')
    (tmp_path / "latin.json").write_bytes(b'[{"id": "x", "conversations": [{"from": "human", "value": "caf\xe9"}]}]')
    conv = LLaVAConverter(str(tmp_path))
    eps, rejected = read_all(conv)
    assert eps == [] and sorted(r.code for r in rejected) == ["corrupt_json", "non_utf8_text"]
    with pytest.raises(InputError, match="not found"):
        LLaVAConverter(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no LLaVA conversation files"):
        LLaVAConverter(str(tmp_path / "empty"))


def test_episode_arrays_are_fully_masked(tmp_path):
    path, _ = write_llava(tmp_path / "llava")
    eps, _ = read_all(LLaVAConverter(str(path)))
    ep = eps[0]
    assert np.all(ep.action == 0) and np.all(ep.state == 0) and ep.timestamp_ns.tolist() == [0]
    assert json.dumps(ep.extra)  # the source's other keys, JSON-safe
