"""AttentionPPO: the entropy term's gradient, the baselines value loss, and the no-attention guard."""

from __future__ import annotations

import pytest
import torch

from fls.envs import make_vec_env
from fls.models import policy_kwargs
from fls.models.policy import FLSPolicy
from fls.ppo import AttentionPPO, LinearDecay


def small_ppo(model: dict, entropy_lambda: float = 0.0, **kwargs) -> AttentionPPO:
    env = make_vec_env("Breakout", num_envs=2, seed=5)
    settings = dict(n_steps=16, batch_size=32, n_epochs=1, seed=5, device="cpu", clip_range_vf=0.1, ent_coef=0.01)
    settings.update(kwargs)
    return AttentionPPO(FLSPolicy, env, policy_kwargs=policy_kwargs(model), entropy_lambda=entropy_lambda, **settings)


def gradients(model: AttentionPPO, loss: torch.Tensor) -> torch.Tensor:
    model.policy.zero_grad()
    loss.backward()
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.policy.parameters()]
    )


@pytest.mark.parametrize("name", ["sparse_fls", "rs", "daqn"])
def test_entropy_term_gradient_is_lambda_times_mean_attention_entropy_gradient(name: str) -> None:
    model = small_ppo({"name": name}, entropy_lambda=0.0)
    model.learn(total_timesteps=32)  # fills the rollout buffer with real Breakout transitions
    batch = next(model.rollout_buffer.get(32))
    lam = 0.5

    model.entropy_lambda = 0.0
    loss_without, _ = model.compute_loss(batch, 0.1, 0.1)
    g_without = gradients(model, loss_without)
    model.entropy_lambda = lam
    loss_with, stats = model.compute_loss(batch, 0.1, 0.1)
    g_with = gradients(model, loss_with)

    model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    mean_entropy = model.policy.features_extractor.attention_entropy().mean()
    g_entropy = gradients(model, mean_entropy)

    assert stats["attention_entropy"] == pytest.approx(mean_entropy.item(), rel=1e-6)
    assert g_entropy.abs().max() > 0
    torch.testing.assert_close(g_with - g_without, lam * g_entropy, rtol=1e-4, atol=1e-6)
    model.env.close()


def test_attention_entropy_is_logged_and_lambda_zero_leaves_loss_unchanged() -> None:
    model = small_ppo({"name": "sparse_fls"})
    model.learn(total_timesteps=32)
    batch = next(model.rollout_buffer.get(32))
    loss, stats = model.compute_loss(batch, 0.1, 0.1)
    expected = stats["policy_gradient_loss"] + 0.01 * stats["entropy_loss"] + 0.5 * stats["value_loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["attention_entropy"] > 0
    model.env.close()


def test_baselines_value_loss_is_half_the_pessimistic_clipped_error() -> None:
    model = small_ppo({"name": "nature_cnn"})
    model.learn(total_timesteps=32)
    batch = next(model.rollout_buffer.get(32))
    # Perturb the policy so that new values differ from the old ones by more than the clip range.
    with torch.no_grad():
        model.policy.value_net.bias += 1.0
    _, stats = model.compute_loss(batch, 0.1, 0.1)
    values = model.policy.predict_values(batch.observations).flatten()
    clipped = batch.old_values + torch.clamp(values - batch.old_values, -0.1, 0.1)
    expected = 0.5 * torch.max((values - batch.returns) ** 2, (clipped - batch.returns) ** 2).mean()
    assert stats["value_loss"] == pytest.approx(expected.item(), rel=1e-5)
    model.env.close()


def test_lambda_needs_attention() -> None:
    with pytest.raises(ValueError, match="needs an extractor with attention"):
        small_ppo({"name": "nature_cnn", "entropy_lambda": 0.0}, entropy_lambda=0.01)
    with pytest.raises(ValueError, match="entropy_lambda must be >= 0"):
        small_ppo({"name": "sparse_fls"}, entropy_lambda=-1.0)


def test_linear_decay_schedule() -> None:
    schedule = LinearDecay(2.5e-4)
    assert schedule(1.0) == 2.5e-4 and schedule(0.0) == 0.0 and schedule(0.5) == pytest.approx(1.25e-4)
