"""Flow matching for action chunks, GR00T's convention: **t = 0 is pure noise, t = 1 is the data**.

- training: ``x_t = (1 - t)·ε + t·a`` and the network predicts the velocity ``v = a - ε``;
  ``t = (1 - b)·scale`` with ``b ~ Beta(1.5, 1)`` and ``scale = 0.999`` (GR00T N1.7), so t is skewed
  toward the noisy end and never reaches 1;
- inference: ``num_steps`` Euler steps from ``x_0 = ε``: ``t_k = k/N``, ``x += v(x, t_k)/N``;
- masks are strict (GR00T N1.7 ``strict_action_padding_mask``): positions where ``mask`` is False are
  zeroed in the noise, the data, ``x_t`` and the prediction, and are left out of the loss. A padded slot
  therefore contributes exactly 0 to the loss and its gradient, whatever values the padding holds, and
  every sampled chunk is exactly 0 there.

openpi/LeRobot use the mirrored convention (t = 1 noise, ``x_t = t·ε + (1 - t)·a``, ``u = ε - a``);
``t_gr00t = 1 - t_openpi`` and ``v_gr00t = -u_openpi`` convert between them.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def sample_time(n: int, beta: tuple[float, float] = (1.5, 1.0), scale: float = 0.999, device=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` flow times in [0, scale], skewed toward 0 (noise). Beta is sampled on CPU (no MPS kernel)."""
    a, c = float(beta[0]), float(beta[1])
    if c == 1.0:
        # Beta(a, 1) has CDF x^a: inverse-CDF sampling, exact, and it takes a generator
        b = torch.rand(n, generator=generator) ** (1.0 / a)
    elif generator is not None:
        # torch.distributions cannot take a generator: Beta(a, c) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(c)
        x = torch._standard_gamma(torch.full((n,), a), generator=generator)
        y = torch._standard_gamma(torch.full((n,), c), generator=generator)
        b = x / (x + y)
    else:
        b = torch.distributions.Beta(a, c).sample((n,))
    return ((1.0 - b) * scale).to(device=device)


def interpolate(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, mask: torch.Tensor):
    """(x_t, velocity target), both exactly 0 where ``mask`` is False. ``t`` is [B]."""
    zero = torch.zeros((), dtype=actions.dtype, device=actions.device)
    a, e = torch.where(mask, actions, zero), torch.where(mask, noise, zero)  # where: NaN padding cannot leak
    tt = t.to(actions.dtype).view(-1, *([1] * (actions.dim() - 1)))
    return (1.0 - tt) * e + tt * a, a - e


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-row squared-error sums): ``sum(mask·(pred - target)²) / max(mask.sum(), 1)``.

    Masked positions are selected out with ``where`` (not multiplied), so even a non-finite value in
    the padding cannot reach the loss or the gradient.
    """
    err = torch.where(mask, (pred - target) ** 2, torch.zeros((), dtype=pred.dtype, device=pred.device))
    per_row = err.flatten(1).sum(1)
    return per_row.sum() / mask.sum().clamp(min=1).to(pred.dtype), per_row


@torch.no_grad()
def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 mask: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from t = 0 (noise) to 1; masked positions stay exactly 0."""
    zero = torch.zeros((), dtype=noise.dtype, device=noise.device)
    x = torch.where(mask, noise, zero)
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = torch.full((x.shape[0],), k * dt, dtype=noise.dtype, device=noise.device)
        x = torch.where(mask, x + dt * velocity(x, t), zero)
    return x
