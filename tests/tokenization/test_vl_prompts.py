"""``render_conversation``: a vision-language row as one chat, labels only on the assistant turns."""
from __future__ import annotations

import pytest

from vlaflow.converters.vl import LLaVAConverter
from vlaflow.schemas import Episode
from vlaflow.tokenization.prompts import IGNORE, render_conversation

from ..converters.vl.conftest import write_llava


@pytest.fixture()
def vl_rows(tmp_path) -> dict:
    """Rows of the llava converter (what the train feed reads back): id -> (embodiment prompt, conversation)."""
    path, _ = write_llava(tmp_path / "llava")
    conv = LLaVAConverter(str(path))
    eps = [x for u in conv.work_units(1 << 30) for x in conv.read(u) if isinstance(x, Episode)]
    return {ep.extra["id"]: (ep.embodiment_prompt, ep.conversation[0]) for ep in eps}


def labelled_spans(ids, labels):
    """Runs of consecutive labelled ids."""
    spans, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != IGNORE:
            assert lab == i
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


def test_multi_turn_row_labels_only_assistant_text(vl_rows, tiny_tokenizer):
    system, turns = vl_rows["000000033471"]
    p = render_conversation(tiny_tokenizer, system, turns)
    assert len(p.input_ids) == len(p.labels) == len(p.attention_mask)
    assert p.text == ("<|im_start|>system\n" + system + "<|im_end|>\n"
                      "<|im_start|>user\nWhat are the colors of the bus in the image?<|im_end|>\n"
                      "<|im_start|>assistant\nThe bus in the image is white and red.<|im_end|>\n"
                      "<|im_start|>user\nWhat feature can be seen on the back of the bus?<|im_end|>\n"
                      "<|im_start|>assistant\nThe back of the bus features an advertisement.<|im_end|>\n")
    assert tiny_tokenizer.decode(p.input_ids) == p.text
    spans = [tiny_tokenizer.decode(s) for s in labelled_spans(p.input_ids, p.labels)]
    assert spans == ["The bus in the image is white and red.<|im_end|>\n",
                     "The back of the bus features an advertisement.<|im_end|>\n"]
    assert tiny_tokenizer.decode(p.input_ids[:p.prompt_length]).endswith("<|im_start|>assistant\n")


def test_image_tokens_system_turns_and_generation(vl_rows, tiny_tokenizer):
    tiny_tokenizer.add_tokens(["<|image|>"], special_tokens=True)
    image_id = tiny_tokenizer.convert_tokens_to_ids("<|image|>")
    system, turns = vl_rows["nlvr2_dev_0"]
    p = render_conversation(tiny_tokenizer, system, turns, image_token="<|image|>", image_token_count=4)
    assert p.input_ids.count(image_id) == 8  # two placeholders, four vision tokens each
    assert all(lab == IGNORE for i, lab in zip(p.input_ids, p.labels) if i == image_id)
    assert [tiny_tokenizer.decode(s) for s in labelled_spans(p.input_ids, p.labels)] == ["False<|im_end|>\n"]
    system, turns = vl_rows["1001"]  # a source system turn joins the embodiment prompt in one system message
    p = render_conversation(tiny_tokenizer, system, turns)
    assert p.text.startswith(f"<|im_start|>system\n{system}\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWho wrote "
                             "this book?<|im_end|>")
    q = render_conversation(tiny_tokenizer, system, turns[:2], add_generation_prompt=True)
    assert q.text.endswith("<|im_start|>assistant\n") and set(q.labels) == {IGNORE}
    assert q.prompt_length == len(q.input_ids)
    short = render_conversation(tiny_tokenizer, system, turns, max_length=10)
    assert len(short.input_ids) == len(short.labels) == 10
    with pytest.raises(ValueError, match="role 'gpt'"):
        render_conversation(tiny_tokenizer, system, [{"role": "gpt", "text": "x"}])


def test_fallback_template_and_text_only_row(vl_rows, tiny_tokenizer_no_template):
    system, turns = vl_rows["i6IyJda_0"]
    p = render_conversation(tiny_tokenizer_no_template, system, turns)
    assert p.text.startswith("<|im_start|>system\nNo body:")
    spans = [tiny_tokenizer_no_template.decode(s) for s in labelled_spans(p.input_ids, p.labels)]
    assert spans == [turns[1]["text"] + "<|im_end|>\n"]
