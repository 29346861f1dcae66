"""Faithful generated vision-language inputs (no public sample is small enough to keep in ../shared).

- LLaVA: the layout of ``llava_v1_5_mix665k.json`` / LLaVA-NeXT-Interleave: a JSON list (or JSON lines) of
  ``{"id", "image": "coco/train2017/….jpg" | [paths], "conversations": [{"from": "human"|"gpt", "value"}]}``,
  images under an image folder in the sources' own sub-folders (coco, gqa, ocr_vqa, vg, nlvr2); text-only
  ShareGPT samples have no ``image``; RefCOCO grounding answers are ``[x1, y1, x2, y2]`` in [0, 1].
- Tables: the ``datasets`` Parquet layout ``data/<split>-00000-of-0000N.parquet``, the image column the
  ``datasets`` Image struct ``{bytes, path}`` with the ``huggingface`` features metadata, question/answer
  (VQAv2 / ScienceQA style), caption (COCO Captions style) or ``conversations`` (LLaVA-OneVision-Data style).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def image_bytes(seed: int, fmt: str = "JPEG", size=(32, 24)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _put(root: Path, rel: str, data: bytes) -> bytes:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return data


GOOD = 5  # the first five samples of `llava_samples` are valid


def llava_samples(images: Path) -> tuple[list[dict], dict[str, list[bytes]]]:
    """Samples in mix665k's format (first GOOD valid, then one of each bad case) and each good sample's image
    bytes in order, by id."""
    want = {}
    want["000000033471"] = [_put(images, "coco/train2017/000000033471.jpg", image_bytes(1))]
    want["i6IyJda_0"] = []
    want["000000580957"] = [_put(images, "coco/train2017/000000580957.jpg", image_bytes(2))]
    want["nlvr2_dev_0"] = [_put(images, "nlvr2/dev-850-0-img0.png", image_bytes(3, "PNG")),
                           _put(images, "nlvr2/dev-850-0-img1.png", image_bytes(4, "PNG"))]
    want["1001"] = [_put(images, "ocr_vqa/images/1001.jpg", image_bytes(5))]
    _put(images, "gqa/images/n1.jpg", image_bytes(6))
    samples = [
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."}]},
        {"id": "i6IyJda_0", "model": "", "conversations": [
            {"from": "human", "value": "Summarize the main ideas of Jeff Walker's Product Launch Formula."},
            {"from": "gpt", "value": "Pre-launch, launch, post-launch — with a story told before the sale. Ünïcödé ✓"}]},
        {"id": "000000580957", "image": "coco/train2017/000000580957.jpg", "conversations": [
            {"from": "human", "value": "<image>\nPlease provide the bounding box coordinate of the region this "
                                       "sentence describes: man on left."},
            {"from": "gpt", "value": "[0.0, 0.23, 0.42, 0.99]"}]},
        {"id": "nlvr2_dev_0", "image": ["nlvr2/dev-850-0-img0.png", "nlvr2/dev-850-0-img1.png"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nThe left image contains twice the number of dogs as "
                                       "the right image. True or False?"},
            {"from": "gpt", "value": "False"}]},
        {"id": "1001", "image": "ocr_vqa/images/1001.jpg", "conversations": [
            {"from": "system", "value": "Answer briefly."},
            {"from": "human", "value": "Who wrote this book?\n<image>"}, {"from": "gpt", "value": "Jane Doe"}]},
        # bad: the image is not in the folder
        {"id": "missing", "image": "vg/VG_100K/2.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A tree."}]},
        # bad: a role LLaVA does not have
        {"id": "badrole", "image": "gqa/images/n1.jpg", "conversations": [
            {"from": "human", "value": "<image>\nIs it sunny?"}, {"from": "bot", "value": "Yes."}]},
        # bad: two placeholders, one image
        {"id": "twoph", "image": "gqa/images/n1.jpg", "conversations": [
            {"from": "human", "value": "<image>\n<image>\nCompare."}, {"from": "gpt", "value": "Same."}]},
        # bad: a path out of the image folder
        {"id": "escape", "image": "../../etc/passwd.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]},
        # bad: a lone surrogate (JSON escape "\udc80"): not UTF-8
        {"id": "surrogate", "conversations": [
            {"from": "human", "value": "Say it."}, {"from": "gpt", "value": "bad \udc80 text"}]},
    ]
    return samples, want


BAD_REASONS = {"missing_image": 1, "unknown_role": 1, "placeholder_mismatch": 1, "unsafe_path": 1,
               "non_utf8_text": 1}


def write_llava(root: Path, *, jsonl: bool = False, name: str = "llava_v1_5_mix665k") -> tuple[Path, dict]:
    """``root/<name>.json(l)`` + ``root/<image folders>``; a JSON-lines file also gets a line of invalid
    UTF-8 bytes (one more ``non_utf8_text``)."""
    root.mkdir(parents=True, exist_ok=True)
    samples, want = llava_samples(root)
    if jsonl:
        lines = [json.dumps(s).encode() for s in samples]
        lines.append(b'{"id": "latin1", "conversations": [{"from": "human", "value": "caf\xe9"}, '
                     b'{"from": "gpt", "value": "ok"}]}')
        path = root / f"{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
    else:
        path = root / f"{name}.json"
        path.write_text(json.dumps(samples, indent=1))
    return path, want


HF_IMAGE = {"_type": "Image"}


def write_table(path: Path, columns: dict, features: dict | None = None, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    if features:
        meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def image_struct(items: list) -> pa.Array:
    return pa.array([None if x is None else {"bytes": x[0], "path": x[1]} for x in items],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def write_vqa_table(root: Path) -> tuple[Path, list]:
    """A VQAv2-like ``datasets`` table in two files of the train split (row groups of 2) + a val file: rows with
    Image structs; one text-only row (null image), one with an answer list, one whose answer is not UTF-8."""
    imgs = [image_bytes(10 + i) for i in range(6)]
    train = {
        "question_id": pa.array([100, 101, 102, 103]),
        "image": image_struct([(imgs[0], "COCO_val2014_000000000042.jpg"), (imgs[1], None), None,
                               (imgs[2], "x.jpg")]),
        "question": pa.array(["What color is the cat?", "How many people?", "What is 2 + 2?", "Is it day?"]),
        "answer": pa.array([b"black", b"3", b"4", b"oui \xff"], pa.binary()),
    }
    write_table(root / "data/train-00000-of-00002.parquet", train, {"image": HF_IMAGE}, row_group_size=2)
    train2 = {"question_id": pa.array([104]), "image": image_struct([(imgs[3], "y.jpg")]),
              "question": pa.array(["Where is the dog?"]), "answer": pa.array([b"on the sofa"], pa.binary())}
    write_table(root / "data/train-00001-of-00002.parquet", train2, {"image": HF_IMAGE})
    val = {"question_id": pa.array([200]), "image": image_struct([(imgs[4], "z.jpg")]),
           "question": pa.array(["What sport?"]), "answer": pa.array([b"tennis"], pa.binary())}
    write_table(root / "data/validation-00000-of-00001.parquet", val, {"image": HF_IMAGE})
    return root, imgs
