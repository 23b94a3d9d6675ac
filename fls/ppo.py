"""PPO with the attention-entropy regulariser: SB3's PPO with one method replaced, ``train``.

Everything else (rollout collection, GAE, the buffer, saving, logging) is SB3's. The update is written out here,
CleanRL-style, because SB3 assembles its loss inside ``train`` and offers no hook to add a term. It differs from
SB3's in two documented ways:

* ``+ entropy_lambda * mean_batch H(attention)`` (rl-attention), logged as ``train/attention_entropy``;
* ``value_loss="baselines"``: OpenAI baselines' ppo2 value loss 0.5 * mean(max((v - R)^2, (v_clip - R)^2)), the
  paper's; ``"sb3"`` keeps SB3's mean((v_clip - R)^2) (used by the rl-zoo3 preset).

Two guards are added to the update:

* steps whose action the env replaced (the FIRE reset, ``infos[i]["action_forced"]``) are recorded in the rollout
  buffer and left out of the policy-gradient and entropy terms (and of the logged clip fraction and KL): the
  stored action and log-probability are the ones the agent sampled, not what was executed. They stay in the value
  loss, whose target does not depend on the action. Without forced steps the update is SB3's, operation for
  operation;
* a non-finite loss, gradient norm or parameter stops training with :class:`NonFiniteError` before the optimiser
  step (or, for parameters, before the next checkpoint can be written).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer, RolloutBufferSamples
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from fls.errors import FlsError
from fls.runtime import to_device

ValueLoss = Literal["baselines", "sb3"]


class NonFiniteError(FlsError, RuntimeError):
    """Training produced a NaN or infinity (in the loss, the gradient norm or a parameter)."""


class AgentRolloutSamples(NamedTuple):
    """SB3's rollout samples plus ``agent_acted``: 1.0 where the sampled action was executed, 0.0 where the env
    replaced it (FIRE reset); None when every action of the minibatch was the agent's."""

    observations: torch.Tensor
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    agent_acted: torch.Tensor | None


class AgentRolloutBuffer(RolloutBuffer):
    """SB3's rollout buffer that also records, per transition, whether the agent's sampled action was executed."""

    def reset(self) -> None:
        self.agent_acted = np.ones((self.buffer_size, self.n_envs), dtype=np.float32)
        super().reset()

    def record_forced(self, infos: list[dict[str, Any]]) -> None:
        """Mark the transition about to be added at ``self.pos`` as forced in the envs whose info says so."""
        if self.full:
            return
        for env_index, info in enumerate(infos):
            if info.get("action_forced", False):
                self.agent_acted[self.pos, env_index] = 0.0

    def get(self, batch_size: int | None = None):  # type: ignore[override]
        if not self.generator_ready:
            self.agent_acted = self.swap_and_flatten(self.agent_acted)
        yield from super().get(batch_size)

    def to_torch(self, array: np.ndarray, copy: bool = True) -> torch.Tensor:
        """SB3's copy of a minibatch array to the device; on CUDA from pinned memory, without blocking the host."""
        if self.device.type == "cuda":
            return to_device(array, self.device)
        return super().to_torch(array, copy)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> AgentRolloutSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        acted = self.agent_acted[batch_inds].flatten()
        # None when every action was the agent's, told here from the host copy: the loss then needs no device sync.
        return AgentRolloutSamples(*samples, agent_acted=None if acted.all() else self.to_torch(acted))


def as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """0-d tensors -> floats, in one host sync."""
    return dict(zip(terms, torch.stack(list(terms.values())).tolist(), strict=True))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the entries where ``mask`` is 1 (all entries when ``mask`` is None)."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class AttentionPPO(PPO):
    """PPO whose loss can penalise the entropy of the policy's attention maps.

    Args:
        entropy_lambda: weight of the mean attention entropy added to the loss (0 disables the term; > 0 needs
            an extractor with attention). Minimising it sharpens the attention.
        value_loss: "baselines" (pessimistic clipped value loss with the 0.5 factor) or "sb3".
        compile: torch.compile the extractor's and the MLP head's forward (rollouts and updates) and the PPO loss
            (ppo.compile); the same losses as eager within float tolerance, compiled at the first rollout.
        Everything else as :class:`stable_baselines3.PPO`.
    """

    def __init__(
        self,
        *args: Any,
        entropy_lambda: float = 0.0,
        value_loss: ValueLoss = "baselines",
        compile: bool = False,
        **kwargs: Any,
    ):
        if entropy_lambda < 0:
            raise ValueError(f"entropy_lambda must be >= 0, got {entropy_lambda}")
        if value_loss not in ("baselines", "sb3"):
            raise ValueError(f"value_loss must be 'baselines' or 'sb3', got {value_loss!r}")
        self.entropy_lambda = float(entropy_lambda)
        self.value_loss = value_loss
        self.compile_step = bool(compile)
        self._compiled_loss: Any = None
        # The last update's logged statistics: SB3 writes them with the next rollout's row, so they are saved with
        # a checkpoint taken between the two, and a resumed run logs them again (log_last_update).
        self.last_update_log: dict[str, list[Any]] = {}
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        # Same buffer, plus the record of forced actions (set here rather than through rollout_buffer_class so
        # that saved models keep SB3's own buffer class in their metadata).
        self.rollout_buffer = AgentRolloutBuffer(
            self.n_steps,
            self.observation_space,
            self.action_space,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )
        if self.entropy_lambda > 0 and not self.policy.features_extractor.has_attention:
            raise ValueError(
                f"entropy_lambda={self.entropy_lambda} needs an extractor with attention; "
                f"{type(self.policy.features_extractor).__name__} has none"
            )

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        # SB3 calls this once per env step, after env.step and before rollout_buffer.add: the one place where the
        # step's infos meet the buffer position the transition goes to.
        super()._update_info_buffer(infos, dones)
        if isinstance(getattr(self, "rollout_buffer", None), AgentRolloutBuffer):
            self.rollout_buffer.record_forced(infos)

    def compute_loss(
        self, batch: RolloutBufferSamples | AgentRolloutSamples, clip_range: float, clip_range_vf: float | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The PPO loss of one minibatch and its parts (for logging): :meth:`loss_terms` with the parts as floats.

        Transitions whose action the env replaced (``agent_acted == 0``) are left out of the policy-gradient and
        entropy terms, the advantage normalisation and the logged clip fraction / KL; all enter the value loss.
        """
        acted = getattr(batch, "agent_acted", None)
        if acted is not None and bool((acted > 0).all()):
            batch = batch._replace(agent_acted=None)
        loss, terms = self.loss_terms(batch, clip_range, clip_range_vf)
        return loss, as_floats(terms)

    def loss_terms(
        self, batch: RolloutBufferSamples | AgentRolloutSamples, clip_range: float, clip_range_vf: float | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The PPO loss of one minibatch and its parts as 0-d tensors (what ``ppo.compile`` compiles: no host
        sync inside, so no graph break). ``batch.agent_acted`` None means every sampled action was executed: then
        the update is SB3's, operation for operation."""
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, actions)
        values = values.flatten()

        acted = getattr(batch, "agent_acted", None)
        advantages = batch.advantages
        if acted is None:
            if self.normalize_advantage and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        elif self.normalize_advantage:
            # Normalised when more than one action was the agent's (a select, not a branch: no host sync).
            count = acted.sum()
            mean = _masked_mean(advantages, acted)
            std = torch.sqrt(((advantages - mean) ** 2 * acted).sum() / (count - 1).clamp_min(1.0))  # ddof 1, as SB3
            advantages = torch.where(count > 1, (advantages - mean) / (std + 1e-8), advantages)
        ratio = torch.exp(log_prob - batch.old_log_prob)
        policy_loss = -_masked_mean(
            torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)), acted
        )

        if clip_range_vf is None:
            values_clipped = values
        else:
            values_clipped = batch.old_values + torch.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
        if self.value_loss == "baselines":
            value_loss = 0.5 * torch.max((values - batch.returns) ** 2, (values_clipped - batch.returns) ** 2).mean()
        else:
            value_loss = F.mse_loss(batch.returns, values_clipped)

        entropy_loss = -_masked_mean(-log_prob if entropy is None else entropy, acted)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

        terms = {}
        extractor = self.policy.features_extractor
        if extractor.has_attention:
            # The maps of the evaluate_actions pass above: no second forward. Without the term it is only logged.
            if self.entropy_lambda > 0:
                attention_entropy = extractor.attention_entropy().mean()
                loss = loss + self.entropy_lambda * attention_entropy
            else:
                with torch.no_grad():
                    attention_entropy = extractor.attention_entropy().mean()
            terms["attention_entropy"] = attention_entropy.detach()

        with torch.no_grad():
            log_ratio = log_prob - batch.old_log_prob
            terms.update(
                policy_gradient_loss=policy_loss.detach(),
                value_loss=value_loss.detach(),
                entropy_loss=entropy_loss.detach(),
                clip_fraction=_masked_mean((torch.abs(ratio - 1) > clip_range).float(), acted),
                approx_kl=_masked_mean((torch.exp(log_ratio) - 1) - log_ratio, acted),
                loss=loss.detach(),
            )
        return loss, terms

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_compiled_loss"]

    def _compile_once(self) -> None:
        """With compile: compile the policy's trunk and heads in place (their parameters and state_dict keys stay
        the same) and the loss, once. The extractor still records its attention maps on every forward."""
        if not self.compile_step or getattr(self, "_compiled_loss", None) is not None:
            return
        self.policy.features_extractor.compile()
        self.policy.mlp_extractor.compile()
        self._compiled_loss = torch.compile(self.loss_terms)

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
                with self._scores_checked("a minibatch"):
                    loss, terms = (getattr(self, "_compiled_loss", None) or self.loss_terms)(
                        batch, clip_range, clip_range_vf
                    )
                stats = as_floats(terms)  # the minibatch's one host sync, outside the compiled region
                for key, value in stats.items():
                    history.setdefault(key, []).append(value)
                if self.target_kl is not None and stats["approx_kl"] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch}: approx_kl {stats['approx_kl']:.3f}")
                    break
                if not math.isfinite(stats["loss"]):
                    self._non_finite("loss", stats["loss"])
                self.policy.optimizer.zero_grad()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    self._non_finite("gradient norm", grad_norm.item())
                self.policy.optimizer.step()
                self.check_parameters_finite()  # before the next minibatch's forward pass reads them
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
        self.last_update_log = {
            key: [value if isinstance(value, int) else float(value), list(self.logger.name_to_excluded.get(key) or ())]
            for key, value in self.logger.name_to_value.items()
            if key.startswith("train/")
        }

    def log_last_update(self) -> None:
        """Record the last update's statistics again, for the next row: a resumed run's first row then has them, as
        the row of an uninterrupted run would have."""
        for key, (value, exclude) in self.last_update_log.items():
            self.logger.record(key, value, exclude=tuple(exclude))

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        """SB3's rollout collection, with a policy whose action scores became non-finite reported as such."""
        self._compile_once()
        with self._scores_checked("the rollout"):
            return super().collect_rollouts(*args, **kwargs)

    @contextmanager
    def _scores_checked(self, where: str) -> Iterator[None]:
        """Turn torch.distributions' refusal of NaN or infinite logits (a ValueError "Expected parameter logits
        ... found invalid values") into :class:`NonFiniteError`: finite but huge weights can give infinite scores."""
        try:
            yield
        except ValueError as error:
            if "Expected parameter" not in str(error):
                raise
            raise NonFiniteError(
                f"non-finite action scores in {where} of PPO update {self._update_index()} (step "
                f"{self.num_timesteps}); training stopped, the newest checkpoint is the last good one (lower "
                "ppo.learning_rate?)"
            ) from None

    def _update_index(self) -> int:
        """1-based number of the update in progress (one update per collected rollout)."""
        return max(self.num_timesteps // (self.n_steps * self.n_envs), 1)

    def _non_finite(self, quantity: str, value: float) -> None:
        """Stop: the update about to be applied would write a non-finite value into the network."""
        raise NonFiniteError(
            f"non-finite {quantity} ({value}) in PPO update {self._update_index()} (step {self.num_timesteps}); "
            "training stopped, the newest checkpoint is the last good one (lower ppo.learning_rate?)"
        )

    def check_parameters_finite(self) -> None:
        """Raise :class:`NonFiniteError` naming the first parameter holding a NaN or infinity (one device sync when
        all are finite: this runs after every minibatch step)."""
        named = list(self.policy.named_parameters())
        if bool(torch.stack([torch.isfinite(p).all() for _, p in named]).all()):
            return
        for name, parameter in named:
            if not bool(torch.isfinite(parameter).all()):
                raise NonFiniteError(
                    f"non-finite parameter {name} after PPO update {self._update_index()} (step {self.num_timesteps}); "
                    "training stopped, the newest checkpoint is the last good one (lower ppo.learning_rate?)"
                )


class LinearDecay:
    """Learning-rate / clip-range schedule decaying linearly from ``initial`` to 0 over the run (SB3 progress)."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        # SB3's progress can dip below 0 on the last update when the budget is not a multiple of the rollout size;
        # a negative learning rate would step uphill.
        return self.initial * max(progress_remaining, 0.0)

    def __repr__(self) -> str:
        return f"LinearDecay({self.initial})"
