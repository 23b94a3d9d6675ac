"""PPO with the attention-entropy regulariser: SB3's PPO with one method replaced, ``train``.

Everything else (rollout collection, GAE, the buffer, saving, logging) is SB3's. The update is written out here,
CleanRL-style, because SB3 assembles its loss inside ``train`` and offers no hook to add a term. It differs from
SB3's in two documented ways:

* ``+ entropy_lambda * mean_batch H(attention)`` (rl-attention), logged as ``train/attention_entropy``;
* ``value_loss="baselines"``: OpenAI baselines' ppo2 value loss 0.5 * mean(max((v - R)^2, (v_clip - R)^2)), the
  paper's; ``"sb3"`` keeps SB3's mean((v_clip - R)^2) (used by the rl-zoo3 preset).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBufferSamples
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

ValueLoss = Literal["baselines", "sb3"]


class AttentionPPO(PPO):
    """PPO whose loss can penalise the entropy of the policy's attention maps.

    Args:
        entropy_lambda: weight of the mean attention entropy added to the loss (0 disables the term; > 0 needs
            an extractor with attention). Minimising it sharpens the attention.
        value_loss: "baselines" (pessimistic clipped value loss with the 0.5 factor) or "sb3".
        Everything else as :class:`stable_baselines3.PPO`.
    """

    def __init__(self, *args: Any, entropy_lambda: float = 0.0, value_loss: ValueLoss = "baselines", **kwargs: Any):
        if entropy_lambda < 0:
            raise ValueError(f"entropy_lambda must be >= 0, got {entropy_lambda}")
        if value_loss not in ("baselines", "sb3"):
            raise ValueError(f"value_loss must be 'baselines' or 'sb3', got {value_loss!r}")
        self.entropy_lambda = float(entropy_lambda)
        self.value_loss = value_loss
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.entropy_lambda > 0 and not self.policy.features_extractor.has_attention:
            raise ValueError(
                f"entropy_lambda={self.entropy_lambda} needs an extractor with attention; "
                f"{type(self.policy.features_extractor).__name__} has none"
            )

    def compute_loss(
        self, batch: RolloutBufferSamples, clip_range: float, clip_range_vf: float | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The PPO loss of one minibatch and its parts (for logging)."""
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, actions)
        values = values.flatten()

        advantages = batch.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = torch.exp(log_prob - batch.old_log_prob)
        policy_loss = -torch.min(
            advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
        ).mean()

        if clip_range_vf is None:
            values_clipped = values
        else:
            values_clipped = batch.old_values + torch.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
        if self.value_loss == "baselines":
            value_loss = 0.5 * torch.max((values - batch.returns) ** 2, (values_clipped - batch.returns) ** 2).mean()
        else:
            value_loss = F.mse_loss(batch.returns, values_clipped)

        entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

        stats = {}
        extractor = self.policy.features_extractor
        if extractor.has_attention:
            # The maps of the evaluate_actions pass above: no second forward. Without the term it is only logged.
            if self.entropy_lambda > 0:
                attention_entropy = extractor.attention_entropy().mean()
                loss = loss + self.entropy_lambda * attention_entropy
            else:
                with torch.no_grad():
                    attention_entropy = extractor.attention_entropy().mean()
            stats["attention_entropy"] = attention_entropy.item()

        with torch.no_grad():
            log_ratio = log_prob - batch.old_log_prob
            stats.update(
                policy_gradient_loss=policy_loss.item(),
                value_loss=value_loss.item(),
                entropy_loss=entropy_loss.item(),
                clip_fraction=torch.mean((torch.abs(ratio - 1) > clip_range).float()).item(),
                approx_kl=torch.mean((torch.exp(log_ratio) - 1) - log_ratio).item(),
                loss=loss.item(),
            )
        return loss, stats

    def train(self) -> None:
        """One PPO update over the collected rollout (n_epochs passes of shuffled minibatches)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)

        history: dict[str, list[float]] = {}
        continue_training = True
        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                loss, stats = self.compute_loss(batch, clip_range, clip_range_vf)
                for key, value in stats.items():
                    history.setdefault(key, []).append(value)
                if self.target_kl is not None and stats["approx_kl"] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch}: approx_kl {stats['approx_kl']:.3f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        for key, values in history.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record(
            "train/explained_variance",
            explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()),
        )
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/entropy_lambda", self.entropy_lambda)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)


class LinearDecay:
    """Learning-rate / clip-range schedule decaying linearly from ``initial`` to 0 over the run (SB3 progress)."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining

    def __repr__(self) -> str:
        return f"LinearDecay({self.initial})"
