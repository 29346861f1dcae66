"""``VLAModel``: backbone + action head (DiT flow matching, or action tokens in the LM vocabulary).

``forward(batch)`` → ``{"loss", "loss/flow", "loss/lm", "loss/<family>"...}``;
``sample_actions(batch)`` → [B, H, action_dim], exactly 0 wherever ``target_mask`` is False (at inference
``target_mask`` says which slots to produce: the embodiment's own ones).

Checkpoint folder (``save_pretrained``/``from_pretrained``): ``config.json`` (``VLAConfig``),
``model.safetensors`` (every trainable and frozen weight except an external vision encoder's),
``tokenizer/`` and ``backbone/config.json`` (the transformers config of the — possibly truncated — LM, so
loading needs neither the original checkpoint nor the network). Loading never unpickles.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from vlaflow.tokenization.prompts import IGNORE

from .backbone import Backbone, action_tokenizer, load_tokenizer
from .config import FAMILIES, VLAConfig
from .dit import FlowActionHead
from .flow import euler_sample, interpolate, masked_mse, sample_time
from .processor import VLAProcessor, own_dims

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER_DIR = "tokenizer"
BACKBONE_DIR = "backbone"
FAST_DIR = "fast_tokenizer"


class VLAModel(nn.Module):
    def __init__(self, config: VLAConfig, tokenizer=None, lm_config=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config)
        self.backbone = Backbone(config, self.tokenizer, lm_config)
        self.vision_encoder = None
        if config.vision == "encoder":
            from .vision import load_frozen_encoder

            self.vision_encoder = load_frozen_encoder(config)
        if config.head == "flow":
            self.action_head = FlowActionHead(
                config.action_dim, config.state_dim, config.horizon, self.backbone.hidden_size,
                config.num_embodiments, hidden=config.dit_hidden, layers=config.dit_layers, heads=config.dit_heads,
                head_dim=config.dit_head_dim, dropout=config.dit_dropout, state_dropout=config.state_dropout)
        else:
            self.action_tokens = action_tokenizer(config, self.tokenizer)

    # ------------------------------------------------------------------ helpers
    def processor(self) -> VLAProcessor:
        return VLAProcessor(self.config, self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _to_device(self, batch: dict) -> dict:
        dev = self.device
        return {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _vision(self, batch: dict):
        if self.config.vision == "none":
            return None, None
        if self.config.vision == "encoder":
            return self.vision_encoder.features(batch["pixel_values"], batch["vision_mask"]), batch["vision_mask"]
        return batch["vision"], batch["vision_mask"]

    def image_mask(self, mask: torch.Tensor, prefix_len: int) -> torch.Tensor | None:
        """[B, S] True at the vision tokens (prefix positions 1..P-1) when the DiT alternates text/image."""
        if not self.config.dit_alternate_vl:
            return None
        img = torch.zeros_like(mask, dtype=torch.bool)
        img[:, 1:prefix_len] = True
        return img

    def encode(self, batch: dict, input_ids=None, attention_mask=None):
        vision, vision_mask = self._vision(batch)
        return self.backbone(batch["input_ids"] if input_ids is None else input_ids,
                             batch["attention_mask"] if attention_mask is None else attention_mask,
                             batch["state"], batch["state_mask"], vision, vision_mask)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict, generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                time: torch.Tensor | None = None) -> dict:
        """Losses of a batch. ``noise`` [B·t_repeat, H, A] and ``time`` [B·t_repeat] fix the flow draw
        (evaluation, tests); otherwise they are sampled (from ``generator`` when given)."""
        batch = self._to_device(batch)
        cfg = self.config
        hidden, mask, prefix_len, _ = self.encode(batch)
        fam = batch["family_id"]
        out: dict = {}
        # per family id: flow squared-error sum, flow count, LM cross-entropy sum, LM token count
        acc = torch.zeros(len(FAMILIES), 4, dtype=torch.float64, device=hidden.device)
        total = hidden.new_zeros(())

        if cfg.head == "flow":
            r = cfg.t_repeat
            rep = (lambda x: x.repeat_interleave(r, 0)) if r > 1 else (lambda x: x)
            tm = rep(batch["target_mask"])
            target = rep(batch["target"])
            if noise is None:
                noise = torch.randn(target.shape, dtype=target.dtype, generator=generator,
                                    device=generator.device if generator is not None else target.device)
            t = time.to(target.device) if time is not None else sample_time(
                target.shape[0], cfg.time_beta, cfg.time_scale, target.device,
                generator=generator if generator is None or generator.device.type == "cpu" else None)
            noise = noise.to(target.device, target.dtype)
            x_t, velocity = interpolate(target, noise, t, tm)
            context = self.action_head.condition(hidden)
            img = self.image_mask(mask, prefix_len)
            pred = self.action_head.velocity(x_t, t, rep(context), rep(mask), rep(batch["state"]),
                                             rep(batch["state_mask"]), tm, rep(batch["embodiment_id"]),
                                             image_mask=None if img is None else rep(img))
            loss_flow, per_row = masked_mse(pred, velocity, tm)
            fam_r = rep(fam)
            acc[:, 0].index_add_(0, fam_r, per_row.detach().double())
            acc[:, 1].index_add_(0, fam_r, tm.flatten(1).sum(1).double())
            out["loss/flow"] = loss_flow.detach()
            total = total + loss_flow

        labels = batch["labels"]
        has_labels = bool((labels != IGNORE).any())
        if has_labels or cfg.head == "discrete":
            full = torch.cat([labels.new_full((labels.shape[0], prefix_len), IGNORE), labels], 1)
            nxt = full[:, 1:]
            sel = nxt != IGNORE
            logits = self.backbone.logits(hidden[:, :-1][sel])  # only labelled positions: no full-vocab pass
            ce = nn.functional.cross_entropy(logits.float(), nxt[sel], reduction="none")
            rows = sel.nonzero()[:, 0]
            loss_lm = ce.sum() / sel.sum().clamp(min=1)
            acc[:, 2].index_add_(0, fam[rows], ce.detach().double())
            acc[:, 3].index_add_(0, fam[rows], torch.ones_like(ce, dtype=torch.float64))
            out["loss/lm"] = loss_lm.detach()
            total = total + loss_lm
        elif any(p.requires_grad for p in self.backbone.lm.get_output_embeddings().parameters()):
            # keep every parameter in the graph (DDP without find_unused_parameters): a zero-weight term
            total = total + 0.0 * self.backbone.logits(hidden[:, :1]).sum()

        for f, (se, n, ce_sum, m) in enumerate(acc.tolist()):  # one device sync for all the metrics
            if n or m:
                out[f"loss/{FAMILIES[f]}"] = (se / max(n, 1) if n else 0.0) + (ce_sum / max(m, 1) if m else 0.0)
        out["loss"] = total
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample_actions(self, batch: dict, num_steps: int | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 1):
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        batch = self._to_device(batch)
        if self.config.head == "discrete":
            return self._decode_tokens(batch)
        hidden, mask, prefix_len, _ = self.encode(batch)
        context = self.action_head.condition(hidden)
        img = self.image_mask(mask, prefix_len)
        tm = batch["target_mask"].bool()
        noise = torch.randn(tm.shape, dtype=context.dtype, generator=generator,
                            device=generator.device if generator is not None else context.device).to(context.device)
        head = self.action_head
        kv = head.dit.cross_kv(context)  # computed once for all the Euler steps of this call

        def velocity(x, t):
            return head.velocity(x, t, context, mask, batch["state"], batch["state_mask"], tm, batch["embodiment_id"],
                                 kv_cache=kv, image_mask=img)

        return euler_sample(velocity, noise, tm, num_steps or self.config.num_inference_steps)

    def _decode_tokens(self, batch: dict) -> torch.Tensor:
        """Greedy decoding of action tokens, row by row with a KV cache, constrained to the action id
        range; decoded into the dims ``target_mask`` asks for (others exactly 0)."""
        from transformers import DynamicCache

        cfg = self.config
        tm = batch["target_mask"].bool()
        b, h, a = tm.shape
        out = torch.zeros((b, h, a), dtype=torch.float32, device=tm.device)
        ids = self.action_tokens.ids
        lo, hi = ids.first, ids.first + ids.n
        end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        for i in range(b):
            dims = own_dims(tm[i].cpu().numpy())
            if not len(dims):
                continue
            n = int(batch["attention_mask"][i].sum())
            row = {k: (v[i: i + 1] if torch.is_tensor(v) and v.shape[:1] == (b,) else v) for k, v in batch.items()}
            input_ids, attn = row["input_ids"][:, :n], row["attention_mask"][:, :n]
            fixed = cfg.discrete_tokenizer == "bins"
            budget = h * len(dims) if fixed else 4 * h * len(dims) + 8
            cache = DynamicCache()
            vision, vision_mask = self._vision(row)
            hid, seen, _, cache = self.backbone(input_ids, attn, row["state"], row["state_mask"], vision, vision_mask,
                                                past_key_values=cache)
            last = hid[:, -1]
            seen = seen.long()  # the prompt's mask (a missing camera stays masked while generating)
            one = torch.ones((1, 1), dtype=torch.long, device=tm.device)
            produced: list[int] = []
            for _ in range(budget):
                logits = self.backbone.logits(last).float()[0]
                allowed = torch.full_like(logits, float("-inf"))
                allowed[lo:hi] = 0.0
                if not fixed and produced:
                    allowed[end_id] = 0.0
                nxt = int(torch.argmax(logits + allowed))
                if nxt == end_id:
                    break
                produced.append(nxt)
                if fixed and len(produced) == budget:
                    break
                emb = self.backbone.lm.get_input_embeddings()(torch.tensor([[nxt]], device=tm.device))
                seen = torch.cat([seen, one], 1)
                o, cache = self.backbone.run(emb, seen, cache)
                last = o[:, -1]
            chunk = self.action_tokens.decode(produced, len(dims), h)
            out[i][:, torch.as_tensor(dims, device=tm.device)] = torch.as_tensor(chunk, dtype=torch.float32,
                                                                                  device=tm.device)
        return torch.where(tm, out, torch.zeros((), device=tm.device))

    # ------------------------------------------------------------------ persistence
    def _tied_keys(self) -> set[str]:
        """State-dict keys that alias the input embeddings (a tied LM head): saved once, re-tied on load."""
        emb = self.backbone.lm.get_input_embeddings().weight
        keys = [k for k, v in self.state_dict(keep_vars=True).items() if v is emb]
        return set(keys[1:])

    def _savable_state(self) -> dict[str, torch.Tensor]:
        skip = self._tied_keys()
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()
                if k not in skip and not k.startswith("vision_encoder.")}

    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = VLAConfig.from_dict(self.config.to_dict())
        if cfg.head == "discrete" and cfg.discrete_tokenizer == "fast":
            src = Path(self.config.fast_tokenizer)
            if src.resolve() != (folder / FAST_DIR).resolve():
                shutil.copytree(src, folder / FAST_DIR, dirs_exist_ok=True)
            cfg.fast_tokenizer = FAST_DIR
        cfg.save(folder / CONFIG)
        save_file(self._savable_state(), str(folder / WEIGHTS), metadata={"format": "pt"})
        self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        self.backbone.lm.config.save_pretrained(str(folder / BACKBONE_DIR))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "VLAModel":
        from safetensors.torch import load_file
        from transformers import AutoConfig

        folder = Path(folder)
        for need in (CONFIG, WEIGHTS, TOKENIZER_DIR, BACKBONE_DIR):
            if not (folder / need).exists():
                raise FileNotFoundError(f"{folder}: not a VLA checkpoint (no {need})")
        config = VLAConfig.load(folder / CONFIG)
        if config.fast_tokenizer and not Path(config.fast_tokenizer).is_absolute():
            config.fast_tokenizer = str(folder / config.fast_tokenizer)
        tokenizer = load_tokenizer(config, folder / TOKENIZER_DIR)
        lm_config = AutoConfig.from_pretrained(str(folder / BACKBONE_DIR), local_files_only=True)
        model = cls(config, tokenizer, lm_config=lm_config)
        state = load_file(str(folder / WEIGHTS), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed = model._tied_keys()
        missing = [k for k in missing if k not in allowed and not k.startswith("vision_encoder.")]
        if missing or unexpected:
            raise ValueError(f"{folder / WEIGHTS}: weights do not match the config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        if allowed:
            model.backbone.lm.tie_weights()
        return model.to(map_location)

    def describe(self) -> dict:
        """Sizes for logs and docs."""
        return {"parameters": self.num_parameters(), "trainable": self.num_parameters(True),
                "backbone_layers": self.backbone.num_layers, "hidden": self.backbone.hidden_size,
                "config": json.loads(json.dumps(self.config.to_dict()))}
