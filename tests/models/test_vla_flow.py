"""Flow-matching primitives (GR00T convention: t = 0 noise, t = 1 data)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaflow.models.vla.flow import euler_sample, interpolate, masked_mse, sample_time


@pytest.mark.parametrize("beta", [(1.5, 1.0), (2.0, 3.0)])
def test_time_follows_the_scaled_beta(beta):
    """t = (1 - b)·0.999, b ~ Beta(a, c): compare the sample's mean and a quantile with the law's."""
    t = sample_time(200_000, beta, 0.999, generator=torch.Generator().manual_seed(0)).numpy()
    a, c = beta
    assert t.min() >= 0 and t.max() <= 0.999
    assert np.mean(1 - t / 0.999) == pytest.approx(a / (a + c), abs=3e-3)
    if c == 1.0:  # P(b <= x) = x^a
        assert np.mean(1 - t / 0.999 <= 0.5) == pytest.approx(0.5 ** a, abs=3e-3)
    same = sample_time(10, beta, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, sample_time(10, beta, generator=torch.Generator().manual_seed(1)))


def test_interpolation_ends_and_velocity():
    a, e = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1, 2] = False
    x0, v = interpolate(a, e, torch.zeros(2), mask)
    x1, _ = interpolate(a, e, torch.ones(2), mask)
    assert torch.equal(x0[mask], e[mask]) and torch.equal(x1[mask], a[mask])
    assert torch.equal(v[mask], (a - e)[mask]) and (v[~mask] == 0).all() and (x0[~mask] == 0).all()
    loss, per_row = masked_mse(v + 1.0, v, mask)
    assert float(loss) == 1.0 and per_row.tolist() == [12.0, 8.0]


def test_euler_integrates_the_exact_velocity_to_the_data():
    """With the true velocity of a straight path, Euler lands on the data in any number of steps."""
    a = torch.randn(3, 5, 2)
    mask = torch.rand(3, 5, 2) > 0.3
    noise = torch.randn(3, 5, 2)
    e = torch.where(mask, noise, torch.zeros(()))

    def velocity(x, t):  # x = (1 - t) e + t a  ⇒  v = a - e
        return a - e

    for steps in (1, 4):
        out = euler_sample(velocity, noise, mask, steps)
        torch.testing.assert_close(out[mask], a[mask])
        assert (out[~mask] == 0).all()
