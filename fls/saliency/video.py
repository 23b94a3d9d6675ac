"""Saliency overlays and videos of a policy playing seeded Atari games.

:func:`play` runs whole games on :func:`fls.envs.make_single_env` (episodic life as in training; a video episode is
a whole game, until ``info["game_over"]``), choosing actions from one forward pass per step (sampled from a
seeded generator, or greedy with ``deterministic=True``; a Q-network plays ε-greedy with ``epsilon``, as SB3's
``DQN.predict``: with probability ε a uniformly random action, drawn from the same generator). The ``attention``
map comes from that very forward pass; the other methods explain the same observation and the taken action
afterwards, in batches of ``map_batch`` steps (batching makes them several times cheaper per frame, and no map can
influence the actions: methods restore the policy's state and draw from no global RNG).

:func:`record_video` lays out each step as: the raw 210x160 frame, one titled overlay panel per method, optionally
the preprocessed input (newest of the 4 stacked frames), all upscaled ``scale`` times, above a text strip with the
episode, step, action name and running score. Maps are normalised over the whole video by default (one maximum per
method, like the reference videos: brightness is comparable across frames, so a frame where the map is weak looks
dim); ``normalize="frame"`` divides each map by its own maximum instead. A ``tree`` method's panel draws the
attention tree of each step over the raw frame (:mod:`fls.saliency.tree_views`) instead of a heat map.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from stable_baselines3.common.policies import ActorCriticPolicy

from fls.envs import make_single_env
from fls.errors import ConfigError
from fls.model_files import check_finite_scores
from fls.models.renderer import RAW_FRAME_SIZE, label_font, upsample_to_frame
from fls.objects.detection import GameObject, detect
from fls.objects.drawing import RGB, draw_objects, object_colours
from fls.progress import progress_bar
from fls.rundir import naming
from fls.saliency.attention import AttentionSaliency
from fls.saliency.base import SaliencyMethod, TargetLike, policy_forward, q_network
from fls.saliency.registry import get_method
from fls.saliency.tree import AttentionTree, TreeSaliency, tree_map

Normalize = Literal["video", "frame"]
OverlayStyle = Literal["color", "reference"]
VIDEO_SUFFIXES = (".mp4", ".gif")
# libx264 needs even sizes and imageio rescales anything not a multiple of its macro block; pad instead.
MACRO_BLOCK = 16


def overlay(
    frame_rgb: np.ndarray,
    saliency: np.ndarray | torch.Tensor,
    *,
    style: OverlayStyle = "color",
    cmap: str = "inferno",
    alpha: float = 0.7,
) -> np.ndarray:
    """Blend an (84, 84) map with values in [0, 1] onto a raw (210, 160, 3) uint8 frame; returns uint8 (210, 160, 3).

    The map is upsampled with :func:`fls.models.renderer.upsample_to_frame` (bilinear, half-pixel centres) to the
    frame's size. ``style="color"`` colours it with a perceptual matplotlib colormap and blends with a per-pixel
    weight ``alpha * map``, so unsalient regions show the game unchanged and salient ones the colormap's bright end.
    ``style="reference"`` is the FLS reference overlay, 0.5 * (frame / 255 + map) on every RGB channel.
    """
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    maps = torch.as_tensor(np.asarray(saliency, dtype=np.float32) if not torch.is_tensor(saliency) else saliency)
    if maps.dim() != 2:
        raise ValueError(f"saliency must be one (H, W) map, got shape {tuple(maps.shape)}")
    up = upsample_to_frame(maps.detach().float().cpu()[None], frame.shape[:2])[0].clamp(0.0, 1.0).numpy()
    base = frame.astype(np.float32) / 255.0
    if style == "reference":
        out = 0.5 * (base + up[..., None])
    elif style == "color":
        from matplotlib import colormaps

        colour = colormaps[cmap](up)[..., :3].astype(np.float32)
        weight = alpha * up[..., None]
        out = base * (1.0 - weight) + colour * weight
    else:
        raise ConfigError(f"unknown overlay style '{style}' (valid: color, reference)")
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass
class EpisodeRecord:
    """One game: unclipped score, agent steps and the agent's chosen actions (before FIRE-reset forcing).

    ``finished`` is False when ``max_steps`` cut the game short.
    """

    score: float
    length: int
    actions: list[int] = field(default_factory=list)
    finished: bool = True


@dataclass
class StepRecord:
    """What the agent saw and did at one step, with the raw (unnormalised) maps explaining it."""

    episode: int
    step: int
    frame: np.ndarray  # raw (210, 160, 3) RGB frame of the observation the action was chosen on
    observation: np.ndarray  # (4, 84, 84) uint8
    action: int
    executed_action: int  # differs from ``action`` on the FIRE-reset steps
    action_name: str
    executed_name: str
    reward: float
    score: float  # before this step's reward
    maps: dict[str, np.ndarray]  # label -> (84, 84) float32, raw
    trees: dict[str, AttentionTree] = field(default_factory=dict)  # label -> tree, for ``tree`` methods
    ram: np.ndarray | None = None  # the console's 128 RAM bytes at ``frame`` (what :mod:`fls.objects` decodes)


@dataclass
class Recording:
    """Result of :func:`record_video`: the video path (None if none was written), PNG frames, per-game records."""

    video: Path | None
    frames: list[Path]
    episodes: list[EpisodeRecord]


def resolve_methods(
    methods: Sequence[str | SaliencyMethod] | Mapping[str, str | SaliencyMethod],
) -> list[tuple[str, SaliencyMethod]]:
    """``[(label, method)]`` from names, method objects, or a mapping label -> name/method (labels are titles)."""
    items = list(methods.items()) if isinstance(methods, Mapping) else [(None, m) for m in methods]
    resolved: list[tuple[str, SaliencyMethod]] = []
    for label, method in items:
        instance = get_method(method) if isinstance(method, str) else method
        if not isinstance(instance, SaliencyMethod):
            raise ConfigError(f"not a saliency method: {method!r}")
        title = label if label is not None else instance.name
        if any(title == existing for existing, _ in resolved):
            title = f"{title} ({len(resolved) + 1})"
        resolved.append((title, instance))
    return resolved


def _pick_action(logits: torch.Tensor, deterministic: bool, generator: torch.Generator, epsilon: float | None) -> int:
    """Greedy; ε-greedy for a Q-network (``epsilon`` not None); else a sample from softmax(logits)."""
    if deterministic:
        return int(logits.argmax(dim=1)[0])
    if epsilon is not None:
        # One uniform draw every step (also when ε = 0), so a game's draws do not depend on ε's value.
        if float(torch.rand(1, generator=generator)[0]) < epsilon:
            return int(torch.randint(logits.shape[1], (1,), generator=generator)[0])
        return int(logits.argmax(dim=1)[0])
    # On the CPU with the recorder's own generator: reproducible for a seed, and the global RNG is left alone.
    probs = torch.softmax(logits.detach().float().cpu(), dim=1)
    return int(torch.multinomial(probs, 1, generator=generator)[0, 0])


def play(
    policy: ActorCriticPolicy,
    game: str,
    *,
    seed: int = 0,
    episodes: int = 1,
    methods: Sequence[str | SaliencyMethod] | Mapping[str, str | SaliencyMethod] = (),
    target: TargetLike = "action",
    deterministic: bool = False,
    epsilon: float = 0.0,
    max_steps: int | None = None,
    max_episode_steps: int | None = None,
    repeat_action_probability: float = 0.0,
    map_batch: int = 32,
    on_step: Callable[[StepRecord], None] | None = None,
    progress: bool = False,
) -> list[EpisodeRecord]:
    """Play ``episodes`` seeded games, computing each method's map for every step; returns one record per game.

    Args:
        policy: an actor-critic (an fls policy or SB3's CnnPolicy) or a DQN / QR-DQN Q-network policy; put in eval
            mode while playing, then restored.
        game: registered game name, e.g. "Breakout".
        seed: env seed and seed of the action-sampling generator.
        methods: saliency methods (names or objects; a mapping gives panel titles). ``attention`` is rendered
            from the forward pass that chose the action.
        target: what the maps explain; "action" means the action actually taken.
        deterministic: greedy actions instead of samples (or ε-greedy ones).
        epsilon: Q-networks only: the probability of a uniformly random action (ε-greedy).
        max_steps: stop after this many agent steps in total (the last game is then ``finished=False``).
        max_episode_steps: agent-step limit of a game (the env's time limit).
        repeat_action_probability: sticky actions (0: the paper's protocol; Machado et al.: 0.25).
        map_batch: steps whose non-attention maps are computed together.
        on_step: called with a :class:`StepRecord` for every step, in order.
        progress: show progress (a bar on a terminal, else a plain line every few seconds).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if map_batch < 1:
        raise ValueError(f"map_batch must be >= 1, got {map_batch}")
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"epsilon must be in [0, 1], got {epsilon}")
    is_q_network = q_network(policy) is not None
    if epsilon and not is_q_network:
        raise ConfigError(f"epsilon applies to Q-network agents (DQN, QR-DQN); {type(policy).__name__} samples actions")
    chosen = resolve_methods(methods)
    for _, method in chosen:
        method.check(policy)  # fail before playing, not after the first batch
    env = make_single_env(
        game,
        seed,
        clip_rewards=False,
        episodic_life=True,
        max_episode_steps=max_episode_steps,
        repeat_action_probability=repeat_action_probability,
    )
    names = env.get_action_meanings()
    generator = torch.Generator().manual_seed(seed)
    records: list[EpisodeRecord] = []
    pending: list[StepRecord] = []

    def flush() -> None:
        later = [(label, m) for label, m in chosen if not isinstance(m, AttentionSaliency)]
        if pending and later:
            batch = np.stack([p.observation for p in pending])
            taken = [p.action for p in pending]
            for label, method in later:
                explain_taken = isinstance(target, str) and target == "action"
                if isinstance(method, TreeSaliency):  # the trees themselves, for the video's tree panel
                    trees = method.trees(policy, batch, target, actions=taken if explain_taken else None)
                    for record, tree in zip(pending, trees, strict=True):
                        record.trees[label] = tree
                        record.maps[label] = tree_map(tree)
                    continue
                maps = method.raw(policy, batch, target, actions=taken if explain_taken else None)
                for record, saliency in zip(pending, maps.float().cpu().numpy(), strict=True):
                    record.maps[label] = saliency
        if on_step is not None:
            for record in pending:
                on_step(record)
        pending.clear()

    was_training = policy.training
    policy.set_training_mode(False)
    bar = progress_bar(max_steps, f"playing {game}", "step", disable=not progress)
    total_steps = 0
    try:
        obs, info = env.reset()
        for episode in range(episodes):
            record = EpisodeRecord(score=0.0, length=0)
            records.append(record)
            while True:
                observation = torch.as_tensor(obs[None], device=policy.device)
                with torch.no_grad():
                    out = policy_forward(policy, observation)
                where = f"at step {record.length} of game {episode + 1} (seed {seed})"
                check_finite_scores(out.logits, type(policy).__name__, where)
                action = _pick_action(out.logits, deterministic, generator, epsilon if is_q_network else None)
                # The attention of the pass that chose the action: no second forward.
                maps = {
                    label: m.from_forward(policy, normalize=False)[0].cpu().numpy()
                    for label, m in chosen
                    if isinstance(m, AttentionSaliency)
                }
                obs_before, frame, ram, score_before = obs, info["rgb"], info.get("ram"), record.score
                obs, reward, terminated, truncated, step_info = env.step(action)
                executed = int(step_info.get("executed_action", action))
                step = StepRecord(
                    episode=episode,
                    step=record.length,
                    frame=frame,
                    observation=obs_before,
                    action=action,
                    executed_action=executed,
                    action_name=names[action],
                    executed_name=names[executed],
                    reward=float(reward),
                    score=score_before,
                    maps=maps,
                    ram=ram,
                )
                record.score += float(reward)
                record.length += 1
                record.actions.append(action)
                pending.append(step)
                total_steps += 1
                bar.update(1)
                if len(pending) >= map_batch:
                    flush()
                game_over = bool(step_info.get("game_over", False))
                if terminated or truncated:
                    obs, info = env.reset()  # after a life loss this continues the same game
                else:
                    info = step_info
                if max_steps is not None and total_steps >= max_steps:
                    record.finished = game_over
                    flush()
                    return records
                if game_over:
                    break
            flush()
        return records
    finally:
        bar.close()
        policy.set_training_mode(was_training)
        env.close()


@dataclass
class _StoredStep:
    frame_png: bytes
    newest: np.ndarray  # (84, 84) uint8, the newest stacked frame
    maps: dict[str, tuple[np.ndarray, float]]  # label -> (map / its max as uint8, its max)
    text: str
    trees: dict[str, AttentionTree]
    objects: list[GameObject]  # the game objects on the frame (empty unless asked for)


def _quantize(saliency: np.ndarray) -> tuple[np.ndarray, float]:
    peak = float(np.max(saliency)) if saliency.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros(saliency.shape, np.uint8), 0.0
    return np.clip(saliency / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), peak


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def compose_frame(
    panels: Sequence[tuple[str, np.ndarray]],
    text: str,
    *,
    scale: int = 2,
    font_size: int | None = None,
    objects: Sequence[GameObject] = (),
    colours: Mapping[str, RGB] | None = None,
) -> np.ndarray:
    """Side-by-side titled panels (each a picture of the whole raw frame, upscaled to 210x160 ``scale`` times)
    above a text strip, with ``objects`` (raw-frame boxes) outlined on every panel in their category's ``colours``
    (:func:`fls.objects.drawing.draw_objects`).

    The canvas is padded to a multiple of 16 pixels (video codecs' macro blocks).
    """
    height, width = RAW_FRAME_SIZE[0] * scale, RAW_FRAME_SIZE[1] * scale
    bar = 15 * scale
    font = label_font(font_size or 10 * scale)
    canvas_h = _round_up(2 * bar + height, MACRO_BLOCK)
    canvas_w = _round_up(len(panels) * width, MACRO_BLOCK)
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    for i, (_, panel) in enumerate(panels):
        resized = cv2.resize(panel, (width, height), interpolation=cv2.INTER_NEAREST)
        if objects:
            picture = Image.fromarray(resized)
            draw_objects(picture, objects, colours or {}, scale=scale)
            resized = np.asarray(picture)
        canvas[bar : bar + height, i * width : (i + 1) * width] = resized
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for i, (title, _) in enumerate(panels):
        draw.text((i * width + 4 * scale, 2 * scale), title, fill=(255, 255, 255), font=font)
    draw.text((4 * scale, bar + height + 2 * scale), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def partial_video_path(path: Path) -> Path:
    """Where :func:`record_video` writes a video before it is complete: a hidden file beside it, same suffix."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _file_size_limit_reached(path: Path) -> bool:
    """Whether ``path`` is as large as this process may write (``ulimit -f``; the encoder inherits the limit)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return limit != resource.RLIM_INFINITY and path.exists() and path.stat().st_size >= limit


def _complete_video(path: Path) -> bool:
    """Whether a written video is whole: an mp4's top-level boxes tile the file and include the index (``moov``,
    written last), a gif ends with its trailer byte. An encoder stopped by a full disk leaves neither."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if path.suffix.lower() == ".gif":
            handle.seek(max(size - 1, 0))
            return size > 0 and handle.read(1) == b";"
        position, kinds = 0, set()
        while position < size:
            handle.seek(position)
            header = handle.read(8)
            if len(header) < 8:
                return False
            box, kind = struct.unpack(">I4s", header)
            if box == 1:
                extended = handle.read(8)
                if len(extended) < 8:
                    return False
                box = struct.unpack(">Q", extended)[0]
            elif box == 0:
                box = size - position
            if box < 8:
                return False
            kinds.add(kind)
            position += box
    return position == size and {b"moov", b"mdat"} <= kinds


def _unfinished_video_error(partial: Path, path: Path) -> Exception:
    """Why the encoder left ``partial`` incomplete, naming ``path``: a full disk and a file-size limit as the
    OSErrors they are (one-line messages with what to do), anything else as a ConfigError."""
    size = partial.stat().st_size if partial.exists() else 0
    if shutil.disk_usage(path.parent).free < max(size, 1 << 20):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if _file_size_limit_reached(partial):
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
    return ConfigError(f"{path}: the video encoder stopped before finishing the file (see its message above)")


def record_video(
    policy: ActorCriticPolicy,
    game: str,
    path: str | Path | None,
    *,
    methods: Sequence[str | SaliencyMethod] | Mapping[str, str | SaliencyMethod] = ("attention",),
    seed: int = 0,
    episodes: int = 1,
    target: TargetLike = "action",
    deterministic: bool = False,
    epsilon: float = 0.0,
    max_steps: int | None = None,
    max_episode_steps: int | None = None,
    repeat_action_probability: float = 0.0,
    normalize: Normalize = "video",
    show_input: bool = True,
    scale: int = 2,
    fps: int = 30,
    style: OverlayStyle = "color",
    cmap: str = "inferno",
    png_dir: str | Path | None = None,
    map_batch: int = 32,
    progress: bool = True,
    objects: bool = False,
) -> Recording:
    """Play seeded games with :func:`play` and write a saliency video (``.mp4`` or ``.gif``) and/or PNG frames.

    One video frame per agent step: raw frame | one overlay panel per method (titled with its label) | the
    network's input (``show_input``), above "ep, step, action, score". ``normalize="video"`` (default) divides each
    method's maps by their maximum over the whole video, ``"frame"`` by each map's own maximum. ``path=None``
    writes no video (PNG frames only, if ``png_dir``). ``objects=True`` outlines the game objects of each frame
    (:func:`fls.objects.detect`, from the frame's RAM) on every panel, the input panel included (the preprocessing
    resizes the whole raw frame, so the boxes map onto it), labelled with their category, one colour per category;
    a game without an object decoder is refused before playing. Other arguments as :func:`play` and
    :func:`overlay`.

    Returns the video path, the PNG paths and one :class:`EpisodeRecord` per game.
    """
    if normalize not in ("video", "frame"):
        raise ConfigError(f"unknown video normalisation '{normalize}' (valid: video, frame)")
    if path is not None and Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"video path must end in {' or '.join(VIDEO_SUFFIXES)}, got {Path(path).name}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    colours = object_colours(game) if objects else None  # ConfigError for a game without a decoder, before playing
    chosen = resolve_methods(methods)
    labels = [label for label, _ in chosen]
    stored: list[_StoredStep] = []
    peaks = dict.fromkeys(labels, 0.0)

    def keep(step: StepRecord) -> None:
        # Frames are kept PNG-compressed (Atari screens compress ~20x) so that long games fit in memory.
        ok, png = cv2.imencode(".png", step.frame[..., ::-1])
        if not ok:
            raise RuntimeError("could not encode a frame")
        maps = {label: _quantize(step.maps[label]) for label in labels}
        for label, (_, peak) in maps.items():
            peaks[label] = max(peaks[label], peak)
        action = step.action_name
        if step.executed_action != step.action:
            action = f"{step.executed_name} (forced; agent: {action})"
        text = f"ep {step.episode + 1}  step {step.step}  action {action}  score {step.score:g}"
        boxes = detect(game, step.ram) if objects else []
        stored.append(_StoredStep(png.tobytes(), step.observation[-1].copy(), maps, text, step.trees, boxes))

    episodes_played = play(
        policy,
        game,
        seed=seed,
        episodes=episodes,
        methods=dict(chosen),
        target=target,
        deterministic=deterministic,
        epsilon=epsilon,
        max_steps=max_steps,
        max_episode_steps=max_episode_steps,
        repeat_action_probability=repeat_action_probability,
        map_batch=map_batch,
        on_step=keep,
        progress=progress,
    )

    video_path = Path(path) if path is not None else None
    png_paths: list[Path] = []
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    writer = None
    if video_path is not None:
        partial = partial_video_path(video_path)  # renamed to video_path once complete: no half-written video
        try:
            writer = _open_writer(partial, fps)
        except OSError as error:
            raise naming(error, video_path, partial) from None
    bar = progress_bar(len(stored), "rendering", "frame", disable=not progress)
    try:
        for index, step in enumerate(stored):
            frame = cv2.imdecode(np.frombuffer(step.frame_png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            panels = [(game, frame)]
            for label in labels:
                if label in step.trees:
                    from fls.saliency.tree_views import tree_panel

                    panels.append((label, tree_panel(frame, step.trees[label])))
                    continue
                quantized, peak = step.maps[label]
                level = 1.0 if normalize == "frame" else (peak / peaks[label] if peaks[label] > 0 else 0.0)
                panels.append((label, overlay(frame, quantized / 255.0 * level, style=style, cmap=cmap)))
            if show_input:
                panels.append(("input", np.repeat(step.newest[..., None], 3, axis=2)))
            image = compose_frame(panels, step.text, scale=scale, objects=step.objects, colours=colours)
            if writer is not None:
                writer.append_data(image)
            if png_dir is not None:
                png_path = Path(png_dir) / f"frame_{index:06d}.png"
                if not cv2.imwrite(str(png_path), image[..., ::-1]):
                    raise ConfigError(f"{png_path}: the frame could not be written (a full disk or the folder?)")
                png_paths.append(png_path)
            bar.update(1)
        if writer is not None:
            writer, closing = None, writer
            closing.close()
            if not _complete_video(partial):
                raise _unfinished_video_error(partial, video_path)
            os.replace(partial, video_path)
    except OSError as error:
        if video_path is not None and error.errno in (None, errno.EPIPE):  # the encoder died (imageio's IOError)
            raise _unfinished_video_error(partial, video_path) from None
        raise naming(error, video_path or Path(png_dir or "."), partial if video_path else None) from None
    finally:
        bar.close()
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass  # already failing: the first error is the one to report
        if video_path is not None:
            partial.unlink(missing_ok=True)
    return Recording(video_path, png_paths, episodes_played)


class _GifWriter:
    """An animated GIF written by Pillow at close, as imageio's Pillow writer does, without its retrying a failed
    write (a full disk) when it is garbage-collected."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path, self.duration, self.frames = path, 1000.0 / fps, []

    def append_data(self, image: np.ndarray) -> None:
        self.frames.append(Image.fromarray(image))

    def close(self) -> None:
        frames, self.frames = self.frames, []
        if frames:
            frames[0].save(self.path, save_all=True, append_images=frames[1:], duration=self.duration, loop=0)


def _open_writer(path: Path, fps: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        return _GifWriter(path, fps)
    import imageio.v2 as imageio

    return imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=MACRO_BLOCK)
