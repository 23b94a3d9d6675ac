"""task=tree: attention trees of chosen steps of seeded games, as PNG + self-contained 3-D HTML + JSON (+ W&B).

The games are the video task's: seed ``saliency.seed``, ``saliency.episodes`` games, sampled actions unless
``saliency.deterministic`` (DQN / QR-DQN: ε-greedy as in evaluation); each tree explains the action taken at that
step (``saliency.target``: for Q-networks the action's Q value). For a game with an object decoder
(:mod:`fls.objects`), each node also names the game object its receptive-field centre falls in (PNG legend, HTML
hover text, ``"object"`` in the JSON).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig

from fls.errors import ConfigError
from fls.logging import publish_to_wandb
from fls.rundir import atomic_write_json, trees_dir
from fls.saliency.settings import saliency_target

if TYPE_CHECKING:
    from fls.agents.loading import Loaded
    from fls.saliency.video import StepRecord


def tree_steps(value: Any) -> list[int]:
    """``tree.steps`` as a sorted list of distinct step numbers >= 0 (a single int is a one-step list)."""
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise ConfigError(f"tree.steps must be a list of agent steps >= 0 like [100,200], got {value}")
    return sorted(set(items))


def attention_tree_task(cfg: DictConfig, loaded: Loaded) -> list[Path]:
    """Play the seeded games, grow the tree of every chosen step, write PNG/HTML/JSON, log them; returns the PNGs."""
    from fls.agents.loading import repeat_action_probability
    from fls.objects.detection import detect, games_with_decoder
    from fls.saliency import get_method
    from fls.saliency.tree_views import tree_image, write_html, write_png
    from fls.saliency.video import play

    t, s = cfg.tree, cfg.saliency
    steps = tree_steps(t.steps)
    from fls.evaluation.runner import acting_epsilon

    method = get_method("tree", n=t.n, depth=t.depth, min_separation=t.min_separation, root=t.root)
    # DQN / QR-DQN play ε-greedy as in evaluation and videos (None for agents that sample from a policy)
    epsilon = acting_epsilon(loaded.agent, bool(s.deterministic), cfg.eval.get("epsilon"))
    policy = loaded.agent.policy
    method.check(policy)
    target = saliency_target(cfg, loaded.agent.n_actions)
    explain_taken = isinstance(target, str) and target == "action"
    seed, episodes = int(s.seed), int(s.episodes)
    out = trees_dir(t.out, loaded.run_dir, loaded.checkpoint)
    stem = f"{loaded.checkpoint.stem}_{loaded.game}_seed{seed}"
    wanted = set(steps)
    with_objects = loaded.game in games_with_decoder()  # trees of other games are drawn without objects
    sticky = repeat_action_probability(cfg, loaded.run_dir)
    written: list[tuple[str, Path, Path]] = []

    def on_step(record: StepRecord) -> None:
        if record.step not in wanted:
            return
        actions = [record.action] if explain_taken else None
        tree = method.trees(policy, record.observation[None], target, actions=actions)[0]  # as play() fed it
        if with_objects and record.ram is not None:  # the game objects of the frame the tree explains
            tree.objects = detect(loaded.game, record.ram)
        name = f"{stem}_game{record.episode + 1}_step{record.step:06d}"
        title = f"{loaded.game} {loaded.checkpoint.stem} seed {seed} game {record.episode + 1} step {record.step}"
        png = write_png(
            tree_image(tree, frame=record.frame, title=title, action_name=record.action_name, game=loaded.game),
            out / f"{name}.png",
        )
        html = write_html(tree, out / f"{name}.html", title=f"{title}: action {record.action_name}")
        meta = {"checkpoint": str(loaded.checkpoint), "game": loaded.game, "seed": seed}
        meta |= {"episode": record.episode, "step": record.step, "action_name": record.action_name}
        meta |= {"n": method.n, "depth": method.depth, "min_separation": method.min_separation}
        meta |= {"tree_root": method.root, "repeat_action_probability": sticky}
        atomic_write_json(out / f"{name}.json", {**meta, **tree.to_dict()}, indent=1)
        written.append((name, png, html))

    last = max(steps) + 1
    records = play(
        policy,
        loaded.game,
        seed=seed,
        episodes=episodes,
        target=target,
        deterministic=bool(s.deterministic),
        epsilon=epsilon or 0.0,
        # One game: stop right after the last chosen step; more games must be played to their end.
        max_steps=min(int(s.max_steps), last) if episodes == 1 else int(s.max_steps),
        max_episode_steps=loaded.spec.eval_max_episode_steps,
        repeat_action_probability=sticky,
        on_step=on_step,
    )
    for index, record in enumerate(records):
        missed = [step for step in steps if step >= record.length]
        if missed:
            how = "ended" if record.finished else "was cut at saliency.max_steps"
            print(
                f"warning: game {index + 1} {how} after {record.length} steps: no tree for step(s) "
                f"{', '.join(map(str, missed))}",
                file=sys.stderr,
            )
    if not written:
        raise ConfigError(f"no chosen step was reached (tree.steps={steps}); choose steps within the game")
    print(f"{loaded.game}: {len(written)} attention trees (n={method.n}) in {out}")
    files = {f"tree/{name}": png for name, png, _ in written}
    files |= {f"tree/{name}_3d": html for name, _, html in written}
    publish_to_wandb(
        out,
        name=f"tree-{loaded.game}-{stem}",
        mode=str(cfg.logger.wandb.mode),
        project=str(cfg.logger.wandb.project),
        job_type="saliency",
        config={"checkpoint": str(loaded.checkpoint), "seed": seed, "steps": steps, "n": method.n, "root": method.root},
        tags=[f"env:{loaded.game}", "saliency", "tree"],
        files=files,
    )
    return [png for _, png, _ in written]
