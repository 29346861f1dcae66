"""``VLAProcessor``: the collate from feed samples (numpy, normalized) to model tensors.

Per sample it renders the chat prompt with ``tokenization/prompts.py`` (system = embodiment prompt,
user = "Task: …"; the flow head uses the generation prompt — it ends with the assistant header — and
the discrete head appends the action tokens as the assistant turn with labels), then pads and stacks.
It holds only the tokenizer and small tables, so it pickles cheaply into Ray Data workers.

Batch keys: ``input_ids, attention_mask, labels, vision, vision_mask, state, state_mask, target,
target_mask, embodiment_id, family_id`` (+ ``pixel_values`` for ``vision="encoder"``). ``labels`` is
always present (-100 everywhere for flow-head action rows) so every batch has the same keys.

Discrete targets: the chunk's *own* dimensions are the positions whose mask is True at any step (time-
major order: every own value of step 0, then step 1, …). Bins give one token per (step, own dim) and the
label of a (step, dim) the mask marks False is -100 (the token stays in the input, it just is not
learned); FAST encodes the [H, own dims] chunk (masked entries 0) as a whole.
"""
from __future__ import annotations

import numpy as np
import torch

from vlaflow.tokenization.prompts import IGNORE, PromptBuilder

from .config import FAMILIES, VLAConfig


def action_tokenizer(config: VLAConfig, tokenizer):
    """The discrete head's action tokenizer, its ids reserved in ``tokenizer`` (idempotent)."""
    if config.discrete_tokenizer == "fast":
        from vlaflow.tokenization.tokenizers.fast import FASTActionTokenizer, FASTTokenizer

        return FASTActionTokenizer(FASTTokenizer.load(config.fast_tokenizer), tokenizer)
    from vlaflow.tokenization.tokenizers.bins import BinActionTokenizer

    return BinActionTokenizer(tokenizer, config.discrete_bins)


def own_dims(target_mask: np.ndarray) -> np.ndarray:
    """Indices of the action dims a chunk supervises at any step."""
    return np.flatnonzero(np.asarray(target_mask, bool).any(0))


def _conversation_fallback(tokenizer, template: str, system: str, conversation: list[dict]) -> tuple[list, list]:
    """Local rendering of a VL conversation until ``prompts.render_conversation`` (issue 17) lands:
    every turn through the chat template, labels on the assistant turns (their text and end-of-turn)."""
    sentinel = "\u2063VLAFLOW_TURN\u2063"
    msgs = ([{"role": "system", "content": system}] if system else [])
    ids: list[int] = []
    labels: list[int] = []
    for turn in conversation:
        role, text = turn["role"], str(turn.get("text", turn.get("content", "")))
        rendered = tokenizer.apply_chat_template(msgs + [{"role": role, "content": sentinel}], tokenize=False,
                                                 chat_template=template)
        before = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template) if msgs else ""
        head, tail = rendered[len(before):].split(sentinel)
        h = tokenizer(head, add_special_tokens=False)["input_ids"]
        b = tokenizer(text, add_special_tokens=False)["input_ids"]
        t = tokenizer(tail, add_special_tokens=False)["input_ids"]
        ids += h + b + t
        labels += [IGNORE] * len(h) + ((b + t) if role == "assistant" else [IGNORE] * (len(b) + len(t)))
        msgs.append({"role": role, "content": text})
    return ids, labels


def render_conversation(tokenizer, template: str, system: str, conversation: list[dict]) -> tuple[list, list]:
    """VL hook: ``tokenization.prompts.render_conversation`` when it exists (issue 17), else the fallback."""
    try:
        from vlaflow.tokenization.prompts import render_conversation as shared
    except ImportError:
        return _conversation_fallback(tokenizer, template, system, conversation)
    out = shared(tokenizer, system, conversation)
    if isinstance(out, dict):
        return list(out["input_ids"]), list(out["labels"])
    if isinstance(out, tuple):
        return list(out[0]), list(out[1])
    return list(out.input_ids), list(out.labels)


class VLAProcessor:
    def __init__(self, config: VLAConfig, tokenizer=None):
        if tokenizer is None:
            from .backbone import load_tokenizer

            tokenizer = load_tokenizer(config)
        self.config, self.tokenizer = config, tokenizer
        self.prompts = PromptBuilder(tokenizer)
        self.actions = action_tokenizer(config, tokenizer) if config.head == "discrete" else None
        self.pad_id = int(tokenizer.pad_token_id)

    # ------------------------------------------------------------------ one sample
    def _truncate(self, ids: list[int], labels: list[int], prompt_len: int) -> tuple[list[int], list[int]]:
        """Keep the prompt within ``max_prompt_tokens`` (its head and its last 8 tokens); the target stays."""
        limit = self.config.max_prompt_tokens
        if prompt_len <= limit:
            return ids, labels
        keep_tail = min(8, limit // 2)
        cut = list(range(limit - keep_tail)) + list(range(prompt_len - keep_tail, len(ids)))
        return [ids[i] for i in cut], [labels[i] for i in cut]

    def encode_prompt(self, sample: dict, *, with_target: bool) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one sample; ``with_target`` adds the discrete action tokens."""
        system, instruction = sample.get("embodiment_prompt") or "", sample.get("instruction") or ""
        if sample.get("conversation"):
            return render_conversation(self.tokenizer, self.prompts.template, system, sample["conversation"])
        if self.config.head == "discrete" and with_target:
            mask = np.asarray(sample["target_mask"], bool)
            dims = own_dims(mask)
            chunk = np.asarray(sample["target"], np.float32)[:, dims] * mask[:, dims]
            ids = self.actions.encode(chunk)
            p = self.prompts.build(system, instruction, action_ids=ids)
            labels = list(p.labels)
            if self.config.discrete_tokenizer == "bins":  # a masked (step, dim) is in the input, not a label
                flat = mask[:, dims].ravel()
                for j, ok in enumerate(flat):
                    if not ok:
                        labels[p.prompt_length + j] = IGNORE
            return self._truncate(list(p.input_ids), labels, p.prompt_length)
        p = self.prompts.generation_prompt(system, instruction)
        return self._truncate(list(p.input_ids), list(p.labels), p.prompt_length)

    # ------------------------------------------------------------------ the collate
    def __call__(self, samples: list[dict], with_target: bool = True) -> dict[str, torch.Tensor]:
        cfg = self.config
        if not samples:
            raise ValueError("VLAProcessor got an empty batch")
        b, h, a = len(samples), cfg.horizon, cfg.action_dim
        encoded = [self.encode_prompt(s, with_target=with_target) for s in samples]
        length = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((b, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((b, length), dtype=torch.long)
        labels = torch.full((b, length), IGNORE, dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)

        state = np.zeros((b, cfg.state_dim), np.float32)
        state_mask = np.zeros((b, cfg.state_dim), bool)
        target = np.zeros((b, h, a), np.float32)
        target_mask = np.zeros((b, h, a), bool)
        n_cam = len(cfg.cameras) if cfg.vision != "none" else 0
        vision = np.zeros((b, n_cam, cfg.vision_tokens, cfg.vision_dim), np.float32)
        vision_mask = np.zeros((b, n_cam), bool)
        for i, s in enumerate(samples):
            if s.get("state") is not None:
                state[i] = _fit(np.asarray(s["state"], np.float32), cfg.state_dim, "state")
                state_mask[i] = _fit(np.asarray(s["state_mask"], bool), cfg.state_dim, "state_mask")
            if s.get("target") is not None:
                target[i] = _fit2(np.asarray(s["target"], np.float32), (h, a), "target")
                target_mask[i] = _fit2(np.asarray(s["target_mask"], bool), (h, a), "target_mask")
            if n_cam and cfg.vision == "features" and s.get("vision") is not None:
                v = np.asarray(s["vision"], np.float32)
                if v.ndim == 2:  # [n_cameras, D]: pooled features
                    v = v[:, None]
                if v.shape[1:] != (cfg.vision_tokens, cfg.vision_dim) or v.shape[0] != n_cam:
                    raise ValueError(f"vision features of shape {v.shape} do not match the model "
                                     f"({n_cam} cameras, {cfg.vision_tokens} tokens, dim {cfg.vision_dim}); "
                                     "compute features with the encoder and --tokens the model was built for")
                vision[i] = v
                vision_mask[i] = np.asarray(s.get("vision_mask", np.ones(n_cam, bool)), bool)
        # padded values are zeroed here too, so nothing of them can travel further
        state = np.where(state_mask, state, 0).astype(np.float32)
        target = np.where(target_mask, target, 0).astype(np.float32)
        vision = np.where(vision_mask[:, :, None, None], vision, 0).astype(np.float32)
        batch = {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "vision": torch.from_numpy(vision), "vision_mask": torch.from_numpy(vision_mask),
            "state": torch.from_numpy(state), "state_mask": torch.from_numpy(state_mask),
            "target": torch.from_numpy(target), "target_mask": torch.from_numpy(target_mask),
            "embodiment_id": torch.tensor([cfg.embodiment_id(s["embodiment"]) if cfg.embodiments else 0
                                           for s in samples], dtype=torch.long),
            "family_id": torch.tensor([family_id(s) for s in samples], dtype=torch.long),
        }
        if cfg.vision == "encoder":
            batch["pixel_values"], batch["vision_mask"] = self._pixels(samples)
        return batch

    def _pixels(self, samples: list[dict]):
        """Raw frames (bytes or HxWx3 uint8, per camera) → the encoder's own preprocessing."""
        from vlaflow.models.vla.vision import decode_frames

        return decode_frames(self.config, samples)


def family_id(sample: dict) -> int:
    fam = sample.get("task_family") or ("vision_language" if sample.get("conversation") else "manipulation")
    try:
        return FAMILIES.index(fam)
    except ValueError:
        raise ValueError(f"unknown task family {fam!r}; one of {', '.join(FAMILIES)}") from None


def _fit(x: np.ndarray, width: int, name: str) -> np.ndarray:
    if x.shape != (width,):
        raise ValueError(f"{name} has shape {x.shape}, the model expects ({width},)")
    return x


def _fit2(x: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """[T, A] target → [H, A]: a shorter chunk is padded (masked), a longer one cut to the horizon."""
    if x.ndim != 2 or x.shape[1] != shape[1]:
        raise ValueError(f"{name} has shape {x.shape}, the model expects (horizon, {shape[1]})")
    out = np.zeros(shape, x.dtype)
    n = min(shape[0], x.shape[0])
    out[:n] = x[:n]
    return out
