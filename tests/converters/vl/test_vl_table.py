"""The ``vl_table`` converter on generated ``datasets``-style Parquet tables (``conftest.py``)."""
from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vl import VLTableConverter
from vlaflow.schemas import Episode, InputError, episodes_to_table, validate_episode
from vlaflow.schemas.invariants import check_step_table

from .conftest import HF_IMAGE, image_bytes, write_table, write_vqa_table


def read_all(conv, target_bytes=1 << 30):
    items = [x for u in conv.work_units(target_bytes) for x in conv.read(u)]
    return [x for x in items if isinstance(x, Episode)], [x for x in items if isinstance(x, Rejected)]


def opts(**kw):
    return ConverterOptions(extra={k: str(v) for k, v in kw.items()})


def test_question_answer_table_with_datasets_images(tmp_path):
    root, imgs = write_vqa_table(tmp_path / "vqav2")
    conv = VLTableConverter(str(root), opts(id_column="question_id"))
    assert conv.mode == "qa" and conv.dataset == "vqav2"
    units = conv.work_units(1)  # one unit per row group
    assert [(u.split, u.start, u.stop) for u in units] == [("train", 0, 1), ("train", 1, None), ("train", 0, None),
                                                           ("validation", 0, None)]
    eps, rejected = read_all(conv, 1)
    assert [e.episode_id for e in eps] == ["vqav2/train/0000000_100", "vqav2/train/0000001_101",
                                           "vqav2/train/0000002_102", "vqav2/train/0000000_104",
                                           "vqav2/validation/0000000_200"]
    assert [(r.code, r.episode_key) for r in rejected] == [("non_utf8_text", "vqav2/train/0000003_103")]
    for ep in eps:
        validate_episode(ep, verify_images=True)
    cat = eps[0]
    assert cat.conversation == [[{"role": "user", "text": "<image>\nWhat color is the cat?"},
                                 {"role": "assistant", "text": "black"}]]
    assert cat.images["primary"] == [imgs[0]] and cat.instruction == "What color is the cat?"
    text_only = eps[2]
    assert text_only.images == {} and text_only.conversation[0][0]["text"] == "What is 2 + 2?"
    assert check_step_table(episodes_to_table(eps)) == []
    assert VLTableConverter(str(root), ConverterOptions(split="validation")).work_units(1 << 20)[0].split == "validation"


def test_caption_table_with_image_paths_and_bad_paths(tmp_path):
    folder = tmp_path / "coco_images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes(1))
    (folder / "b.png").write_bytes(image_bytes(2, "PNG"))
    write_table(tmp_path / "captions" / "captions.parquet", {
        "file_name": pa.array(["a.jpg", "b.png", "gone.jpg", "../secret.jpg", "/etc/x.jpg"]),
        "caption": pa.array(["A man riding a horse.", "Two cats.", "x", "y", "z"])})
    conv = VLTableConverter(str(tmp_path / "captions"), opts(image_column="file_name", caption_column="caption",
                                                             image_folder=folder, dataset="coco_captions"))
    eps, rejected = read_all(conv)
    assert [e.conversation[0] for e in eps] == [
        [{"role": "user", "text": "<image>\nDescribe the image."}, {"role": "assistant", "text": "A man riding a horse."}],
        [{"role": "user", "text": "<image>\nDescribe the image."}, {"role": "assistant", "text": "Two cats."}]]
    assert eps[1].images["primary"] == [(folder / "b.png").read_bytes()] and eps[0].split == "captions"
    assert Counter(r.code for r in rejected) == {"missing_image": 1, "unsafe_path": 2}


def test_conversation_column_multi_image_and_named_reasons(tmp_path):
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    two = [(image_bytes(3), "l.jpg"), (image_bytes(4), "r.jpg")]
    images = pa.array([[{"bytes": b, "path": p} for b, p in two], [{"bytes": two[0][0], "path": None}],
                       [{"bytes": two[0][0], "path": None}], [], [{"bytes": b, "path": None} for b, _ in two * 2]],
                      pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    convs = pa.array([
        [{"from": "human", "value": "<image>\n<image>\nSame scene?"}, {"from": "gpt", "value": "Yes."}],
        [{"from": "human", "value": "Where is the red block? Answer with a point."},
         {"from": "gpt", "value": "<point>(0.31, 0.62)</point>"}],
        [{"from": "human", "value": "<image>\nHi"}, {"from": "robot", "value": "Hello"}],
        [{"from": "human", "value": "Only text."}],
        [{"from": "human", "value": "Four?"}, {"from": "gpt", "value": "Yes"}],
    ], pa.list_(turn))
    write_table(tmp_path / "ov" / "data" / "train-00000-of-00001.parquet", {"id": pa.array(["a", "b", "c", "d", "e"]),
                                                                           "image": images, "conversations": convs},
                {"image": [HF_IMAGE]})
    conv = VLTableConverter(str(tmp_path / "ov"), opts(id_column="id"))
    assert conv.mode == "conversation"
    eps, rejected = read_all(conv)
    assert [e.episode_id for e in eps] == ["ov/train/0000000_a", "ov/train/0000001_b"]
    assert set(eps[0].images) == {"primary", "secondary"} and eps[0].images["secondary"] == [two[1][0]]
    # no placeholder in the source text: one is put before the first user turn; the point stays text
    assert eps[1].conversation[0][0]["text"].startswith("<image>\nWhere is")
    assert eps[1].conversation[0][1]["text"] == "<point>(0.31, 0.62)</point>"
    assert {r.episode_key.split("_")[-1]: r.code for r in rejected} == {
        "c": "unknown_role", "d": "no_answer", "e": "too_many_images"}


def test_missing_columns_are_one_line_input_errors(tmp_path):
    write_table(tmp_path / "t.parquet", {"img": pa.array([b"x"]), "q": pa.array(["?"])})
    with pytest.raises(InputError, match=r"column\(s\) \['image', 'question', 'answer'\] not in the table"):
        VLTableConverter(str(tmp_path / "t.parquet"))
    with pytest.raises(InputError, match="not found"):
        VLTableConverter(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="unknown --opt colour"):
        VLTableConverter(str(tmp_path / "t.parquet"), opts(colour="x"))
