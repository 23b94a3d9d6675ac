"""AttentionPPO: the entropy term's gradient, the baselines value loss, and the no-attention guard."""

from __future__ import annotations

import numpy as np
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


def test_forced_fire_steps_are_recorded_and_left_out_of_the_policy_terms() -> None:
    """The FIRE reset replaces the agent's first two actions of each learner episode; those transitions store an
    action that was never executed, so they must not move the policy (they still train the value)."""
    model = small_ppo({"name": "nature_cnn"}, n_steps=64, batch_size=128)
    forced_seen = []
    original = model._update_info_buffer

    def spy(infos, dones=None):
        forced_seen.append([bool(info.get("action_forced", False)) for info in infos])
        original(infos, dones)

    model._update_info_buffer = spy
    model.learn(total_timesteps=128)
    buffer = model.rollout_buffer
    forced = torch.tensor(forced_seen[-64:]).float()
    # Every Breakout episode starts with FIRE and action 2, so a 64-step rollout has forced steps.
    assert forced.sum() >= 4
    # After the update the buffer is flattened env by env, as SB3 flattens its own arrays.
    torch.testing.assert_close(torch.as_tensor(buffer.agent_acted), (1.0 - forced).T.reshape(-1, 1))

    batch = next(buffer.get(128))
    acted = batch.agent_acted
    assert 0 < acted.sum() < len(acted)

    def policy_terms(samples):
        _, stats = model.compute_loss(samples, 0.1, 0.1)
        return stats["policy_gradient_loss"], stats["entropy_loss"], stats["value_loss"]

    before = policy_terms(batch)
    # Change what was stored for the forced steps: the policy terms must not notice.
    moved = batch.actions.clone()
    moved[acted == 0] = (moved[acted == 0] + 1) % model.action_space.n
    log_prob = batch.old_log_prob.clone()
    log_prob[acted == 0] -= 1.0
    after_forced = policy_terms(batch._replace(actions=moved, old_log_prob=log_prob))
    assert after_forced[:2] == pytest.approx(before[:2], rel=1e-6, abs=1e-9)
    # The same change on steps the agent did act on moves the policy loss.
    moved = batch.actions.clone()
    moved[acted == 1] = (moved[acted == 1] + 1) % model.action_space.n
    after_acted = policy_terms(batch._replace(actions=moved))
    assert after_acted[0] != pytest.approx(before[0], rel=1e-6)
    # Forced steps still train the value: dropping their returns changes the value loss.
    returns = batch.returns.clone()
    returns[acted == 0] += 10.0
    assert policy_terms(batch._replace(returns=returns))[2] != pytest.approx(before[2], rel=1e-6)
    model.env.close()


def test_without_forced_steps_the_loss_is_unchanged_by_the_mask() -> None:
    model = small_ppo({"name": "sparse_fls"})
    model.learn(total_timesteps=32)
    batch = next(model.rollout_buffer.get(32))
    all_acted = batch._replace(agent_acted=torch.ones_like(batch.agent_acted))
    from stable_baselines3.common.buffers import RolloutBufferSamples

    plain = RolloutBufferSamples(*all_acted[:6])
    loss_masked, _ = model.compute_loss(all_acted, 0.1, 0.1)
    loss_plain, _ = model.compute_loss(plain, 0.1, 0.1)
    assert loss_masked.item() == loss_plain.item()
    model.env.close()


def test_non_finite_parameter_or_loss_stops_the_update() -> None:
    from fls.ppo import NonFiniteError

    model = small_ppo({"name": "sparse_fls"})
    model.learn(total_timesteps=32)
    with torch.no_grad():
        model.policy.value_net.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        model.train()
    with pytest.raises(NonFiniteError, match="non-finite parameter value_net.weight"):
        model.check_parameters_finite()
    model.env.close()


@pytest.mark.parametrize("name", ["sparse_fls", "dense_fls"])
def test_all_zero_attention_is_uniform_not_nan(name: str) -> None:
    """softplus underflows to exactly 0 for very negative inputs: normalisation and entropy must stay finite."""
    import math

    from fls.models.layers import normalize_over_positions

    zero = torch.zeros(2, 1, 7, 7, requires_grad=True)
    p = normalize_over_positions(zero)
    torch.testing.assert_close(p, torch.full_like(p, 1 / 49))
    model = small_ppo({"name": name, "normalize_attention": True})
    extractor = model.policy.features_extractor
    entropy = extractor.attention_entropy([zero])
    assert entropy.tolist() == pytest.approx([math.log(49)] * 2, rel=1e-5)
    entropy.sum().backward()
    assert torch.isfinite(zero.grad).all()
    model.env.close()


def test_linear_decay_never_goes_negative() -> None:
    """SB3's progress dips below 0 on the last update when the budget is not a multiple of the rollout."""
    assert LinearDecay(2.5e-4)(-0.000018) == 0.0


@pytest.mark.slow
def test_compiled_loss_has_no_graph_break() -> None:
    """ppo.compile compiles loss_terms whole: its parts stay tensors (one .tolist() outside), and forced steps are
    masked without asking the device whether any were forced."""
    model = small_ppo({"name": "sparse_fls"}, entropy_lambda=0.5)
    model.learn(total_timesteps=32)
    batch = next(model.rollout_buffer.get(32))
    assert batch.agent_acted is not None  # the FIRE reset's forced steps
    for samples in (batch, batch._replace(agent_acted=None)):
        explained = torch._dynamo.explain(model.loss_terms)(samples, 0.1, 0.1)
        assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    model.env.close()


@pytest.mark.slow
def test_compiled_step_gives_the_eager_losses(tmp_path) -> None:
    """ppo.compile: same seed, same rollouts and losses as eager over 2 updates (float tolerance), the attention
    entropy term included; the compiled model saves and loads like an eager one."""
    runs = {}
    for compiled in (False, True):
        model = small_ppo({"name": "sparse_fls"}, entropy_lambda=0.5, compile=compiled)
        updates = []
        for first in (True, False):  # one update (2 envs x 16 steps) each
            model.learn(total_timesteps=32, reset_num_timesteps=first)
            updates.append(dict(model.last_update_log))
        runs[compiled] = model, updates
    (eager, eager_logs), (fast, fast_logs) = runs[False], runs[True]
    assert fast._compiled_loss is not None and eager._compiled_loss is None
    assert eager_logs[0] != eager_logs[1]  # two different updates were logged
    for e, c in zip(eager_logs, fast_logs, strict=True):
        assert e.keys() == c.keys() and "train/attention_entropy" in e
        for key in e:
            assert c[key][0] == pytest.approx(e[key][0], rel=1e-4, abs=1e-6), key
    for p, q in zip(eager.policy.parameters(), fast.policy.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    fast.save(tmp_path / "compiled.zip")
    loaded = AttentionPPO.load(tmp_path / "compiled.zip", device="cpu")
    assert loaded.policy.state_dict().keys() == eager.policy.state_dict().keys()


def test_host_copies_on_the_cpu_are_as_before() -> None:
    """Pinned memory and non-blocking copies are for CUDA: on the CPU an observation is still torch.as_tensor's view
    of the array and a rollout minibatch SB3's copy (tests/test_gpu.py checks the CUDA side)."""
    from gymnasium import spaces

    from fls.ppo import AgentRolloutBuffer
    from fls.runtime import to_device

    array = np.arange(24, dtype=np.float32).reshape(2, 12)
    view = to_device(array, torch.device("cpu"))
    assert np.shares_memory(view.numpy(), array)
    buffer = AgentRolloutBuffer(2, spaces.Box(0, 1, (12,)), spaces.Discrete(2), device="cpu", n_envs=1)
    copy = buffer.to_torch(array)
    assert torch.equal(copy, torch.tensor(array)) and not np.shares_memory(copy.numpy(), array)
