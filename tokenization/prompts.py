"""Embodiment-aware training prompts rendered with a Hugging Face chat template.

One sample is a conversation:

- **system**: the row's embodiment prompt ("Robot: WidowX 250, one 6-DoF arm … at 5 Hz; gripper
  1 = open.") — it tells the model which body, action space, frame and rate it is driving;
- **user**: ``Task: {instruction}``, optionally followed by ``State: 12 200 45 …`` (the normalized
  state discretized into bins and written as numbers, as pi0-FAST does);
- **assistant**: the target — action tokens (ids from ``BinActionTokenizer``/``FASTActionTokenizer``,
  inserted as ids, never re-tokenized from text), text (navigation: "move forward 75 cm, turn left
  30 degrees"), or a placeholder token for a continuous action head.

The tokenizer's own chat template is used when it has one, else ``QWEN_CHAT_TEMPLATE``
(``<|im_start|>role\\n…<|im_end|>``). ``labels`` are -100 on everything but the target and the
template's end-of-turn suffix (for a continuous head the placeholder is not a label either).

Vision-language rows (task family ``vision_language``) carry their own conversation instead of an action:
``render_conversation`` renders system = the row's embodiment prompt ("No body: …") and the row's turns, with
labels on every assistant turn's text and end-of-turn suffix only, and ``<image>`` placeholders replaced by the
model's image token (or removed when the model feeds vision as a prefix).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .tokenizers.bins import UniformBins

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ACTION_PLACEHOLDER = "<|action|>"
IGNORE = -100
IMAGE_PLACEHOLDER = "<image>"  # = vlaflow.schemas.IMAGE_PLACEHOLDER (tokenization sees schemas only by value)
_SENTINEL = "\u2063VLAFLOW_TARGET\u2063"
_OPEN, _CLOSE = "\u2063VLAFLOW_ANSWER\u2063", "\u2063VLAFLOW_END\u2063"


# ----------------------------------------------------------------------------------- navigation
def nav_commands_text(commands, min_forward_m: float = 0.005, min_angle_rad: float = 1e-3) -> str:
    """``nav.command`` rows [T, 4] (forward m, turn rad + = left, pitch rad + = up, stop) as text.

    Consecutive moves of one kind merge, as NaVid phrases them: three 0.25 m steps and two 15°
    left turns read "move forward 75 cm, turn left 30 degrees"; a stop ends the text.
    """
    cmds = np.atleast_2d(np.asarray(commands, np.float64))
    runs: list[list] = []  # [kind, sign, amount]
    for fwd, turn, pitch, stop in cmds[:, :4]:
        if stop >= 0.5:
            runs.append(["stop", 0, 0.0])
            break
        for kind, v, thr in (("move", fwd, min_forward_m), ("turn", turn, min_angle_rad),
                             ("look", pitch, min_angle_rad)):
            if abs(v) >= thr:
                sign = 1 if v > 0 else -1
                if runs and runs[-1][0] == kind and runs[-1][1] == sign:
                    runs[-1][2] += abs(v)
                else:
                    runs.append([kind, sign, abs(v)])
    words = {("move", 1): "move forward", ("move", -1): "move backward", ("turn", 1): "turn left",
             ("turn", -1): "turn right", ("look", 1): "look up", ("look", -1): "look down"}
    parts = []
    for kind, sign, amount in runs:
        if kind == "stop":
            parts.append("stop")
        elif kind == "move":
            parts.append(f"{words[kind, sign]} {round(amount * 100)} cm")
        else:
            parts.append(f"{words[kind, sign]} {round(float(np.degrees(amount)))} degrees")
    return ", ".join(parts) if parts else "wait"


_NAV_RE = re.compile(r"(move forward|move backward|turn left|turn right|look up|look down)\s+(\d+(?:\.\d+)?)\s*"
                     r"(cm|degrees)|(stop)")


def parse_nav_text(text: str) -> np.ndarray:
    """Inverse of ``nav_commands_text``: one ``nav.command`` row [4] per phrase (merged moves)."""
    rows = []
    for m in _NAV_RE.finditer(text.lower()):
        cmd = np.zeros(4)
        if m.group(4):
            cmd[3] = 1.0
        else:
            what, amount = m.group(1), float(m.group(2))
            sign = 1.0 if what.split()[1] in ("forward", "left", "up") else -1.0
            if what.startswith("move"):
                cmd[0] = sign * amount / 100
            else:
                cmd[1 if what.startswith("turn") else 2] = sign * np.radians(amount)
        rows.append(cmd)
    return np.array(rows).reshape(-1, 4)


def state_text(normalized_state, n_bins: int = 256) -> str:
    """Normalized state values → "12 200 45 …" (bin indices of ``UniformBins(n_bins)``)."""
    return " ".join(str(int(i)) for i in UniformBins(n_bins).encode(np.ravel(normalized_state)))


# -------------------------------------------------------------------------------------- builder
@dataclass
class Prompt:
    text: str
    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]
    prompt_length: int  # tokens before the target: generation starts here


class PromptBuilder:
    def __init__(self, tokenizer, chat_template: str | None = None, task_format: str = "Task: {instruction}",
                 state_bins: int = 256, placeholder: str = ACTION_PLACEHOLDER, placeholder_count: int = 1):
        self.tok = tokenizer
        self.template = chat_template or getattr(tokenizer, "chat_template", None) or QWEN_CHAT_TEMPLATE
        self.task_format, self.state_bins = task_format, state_bins
        self.placeholder, self.placeholder_count = placeholder, placeholder_count

    def messages(self, embodiment_prompt: str, instruction: str, state=None) -> list[dict]:
        user = self.task_format.format(instruction=instruction.strip() or "(none)")
        if state is not None and np.size(state):
            user += "\nState: " + state_text(state, self.state_bins)
        msgs = [{"role": "user", "content": user}]
        if embodiment_prompt:
            msgs.insert(0, {"role": "system", "content": embodiment_prompt})
        return msgs

    def _render(self, msgs, add_generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt,
                                            chat_template=self.template)

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) if text else []

    def generation_prompt(self, embodiment_prompt: str, instruction: str, state=None) -> Prompt:
        """The prefix a model continues at inference (ends with the assistant turn's header)."""
        text = self._render(self.messages(embodiment_prompt, instruction, state), True)
        ids = self._ids(text)
        return Prompt(text, ids, [IGNORE] * len(ids), [1] * len(ids), len(ids))

    def build(self, embodiment_prompt: str, instruction: str, *, state=None, action_ids=None,
              action_text: str | None = None, continuous: bool = False) -> Prompt:
        """A training sample; exactly one of ``action_ids`` (LM ids), ``action_text``, ``continuous``."""
        if sum(x is not None and x is not False for x in (action_ids, action_text, continuous or None)) != 1:
            raise ValueError("give exactly one target: action_ids, action_text or continuous=True")
        msgs = self.messages(embodiment_prompt, instruction, state)
        full = self._render(msgs + [{"role": "assistant", "content": _SENTINEL}], False)
        if full.count(_SENTINEL) != 1:
            raise ValueError("the chat template must render the assistant content verbatim, once")
        prefix, suffix = full.split(_SENTINEL)
        prefix_ids, suffix_ids = self._ids(prefix), self._ids(suffix)
        if action_ids is not None:
            target = [int(i) for i in action_ids]
            target_text = self.tok.decode(target, skip_special_tokens=False)
            target_labels = list(target)
        elif action_text is not None:
            target = self._ids(action_text)
            target_text, target_labels = action_text, list(target)
        else:
            target_text = self.placeholder * self.placeholder_count
            target = self._ids(target_text)
            target_labels = [IGNORE] * len(target)
        ids = prefix_ids + target + suffix_ids
        labels = [IGNORE] * len(prefix_ids) + target_labels + list(suffix_ids)
        return Prompt(prefix + target_text + suffix, ids, labels, [1] * len(ids), len(prefix_ids))

    def add_placeholder_token(self) -> int:
        """Register the continuous-head placeholder as a special token; returns its id."""
        self.tok.add_tokens([self.placeholder], special_tokens=True)
        return self.tok.convert_tokens_to_ids(self.placeholder)


# ------------------------------------------------------------------------------ vision-language rows
def _show_images(text: str, image_token: str | None, count: int) -> str:
    if image_token is None:  # vision goes in as a prefix: drop the placeholder and the line break LLaVA puts after it
        return text.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "").strip()
    return text.replace(IMAGE_PLACEHOLDER, image_token * count)


_EOT: dict[tuple, str] = {}


def _end_of_turn(tok, template: str) -> str:
    """What the template writes right after an assistant turn's content (Qwen: ``<|im_end|>\\n``); once per
    template and special tokens (the collate calls this per sample)."""
    key = (template, getattr(tok, "eos_token", None), getattr(tok, "bos_token", None))
    if key not in _EOT:
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _OPEN + "a" + _CLOSE}]
        text = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=False, chat_template=template)
        _EOT[key] = text.split(_CLOSE, 1)[1] if text.count(_CLOSE) == 1 else ""
    return _EOT[key]


def render_conversation(tokenizer, system: str | None, conversation: list[dict], *, chat_template: str | None = None,
                        image_token: str | None = None, image_token_count: int = 1, max_length: int | None = None,
                        add_generation_prompt: bool = False) -> Prompt:
    """A vision-language row as one chat: ``input_ids`` and ``labels`` (-100 except on assistant turns).

    - ``system``: the row's embodiment prompt (``embodiment_prompt``), first; ``system`` turns of the
      conversation follow it in the same system message;
    - ``conversation``: the row's ``conversation`` column, ``[{"role": user|assistant|system, "text": ...}]``;
      each ``<image>`` becomes ``image_token * image_token_count`` (the model's vision tokens, in row image
      order) or, with ``image_token=None``, is removed (vision fed as a prefix);
    - labels: every assistant turn's tokens and the template's end-of-turn suffix after it (so the model
      learns to stop); the rest -100. ``prompt_length`` = tokens before the first label;
    - ``max_length``: right truncation of ids and labels alike;
    - ``add_generation_prompt``: end with the assistant header (inference on a conversation ending with user).
    """
    tok = tokenizer
    template = chat_template or getattr(tok, "chat_template", None) or QWEN_CHAT_TEMPLATE
    sys_parts = [system] if system else []
    msgs = []
    for k, turn in enumerate(conversation):
        role, text = turn["role"], _show_images(turn["text"], image_token, image_token_count)
        if role == "system":
            sys_parts.append(text)
        elif role == "user":
            msgs.append({"role": "user", "content": text})
        elif role == "assistant":
            msgs.append({"role": "assistant", "content": _OPEN + text + _CLOSE})
        else:
            raise ValueError(f"conversation turn {k}: role {role!r} is not system, user or assistant")
    if sys_parts:
        msgs.insert(0, {"role": "system", "content": "\n".join(sys_parts)})
    full = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt,
                                   chat_template=template)
    answers = sum(m["role"] == "assistant" for m in msgs)
    if full.count(_OPEN) != answers or full.count(_CLOSE) != answers:
        raise ValueError("the chat template must render each assistant turn's content verbatim, once")
    eot = _end_of_turn(tok, template)
    ids_of = lambda t: list(tok(t, add_special_tokens=False)["input_ids"]) if t else []
    ids: list[int] = []
    labels: list[int] = []
    text_out = []
    head, *rest = full.split(_OPEN)
    pieces = [(head, False)]
    for chunk in rest:
        answer, after = chunk.split(_CLOSE, 1)
        pieces.append((answer, True))
        if eot and after.startswith(eot):
            pieces += [(eot, True), (after[len(eot):], False)]
        else:
            pieces.append((after, False))
    for piece, labelled in pieces:
        part = ids_of(piece)
        ids += part
        labels += part if labelled else [IGNORE] * len(part)
        text_out.append(piece)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    first = next((i for i, x in enumerate(labels) if x != IGNORE), len(ids))
    return Prompt("".join(text_out), ids, labels, [1] * len(ids), first)
