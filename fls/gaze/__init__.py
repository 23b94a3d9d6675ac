"""Human gaze (Atari-HEAD): read trials, replay them through the training preprocessing, score saliency maps.

Data flow: :func:`list_trials` -> :func:`replay_trial` (observations + pooled fixation maps) -> the caller's
saliency methods -> :func:`score_trials` (NSS, KL, CC, shuffled AUC; baselines) -> :class:`GazeResults`.
"""

from fls.gaze.baselines import BASELINES, BaselineMaps, center_prior, uniform_random
from fls.gaze.metrics import (
    FrameScorer,
    auc_judd,
    auc_rank,
    cc,
    gaussian_blur,
    kl_divergence,
    nss,
    roc_auc,
    shuffled_auc,
)
from fls.gaze.reader import GazeRow, ParseReport, Trial, iter_frames, list_trials, parse_gaze_lines, read_gaze
from fls.gaze.replay import FIRST_INPUT, ReplayBatch, ReplayItem, frame_window, input_positions, replay_trial
from fls.gaze.scoring import GazeResults, SaliencyFn, score_trials

__all__ = [
    "BASELINES",
    "FIRST_INPUT",
    "BaselineMaps",
    "FrameScorer",
    "GazeResults",
    "GazeRow",
    "ParseReport",
    "ReplayBatch",
    "ReplayItem",
    "SaliencyFn",
    "Trial",
    "auc_judd",
    "auc_rank",
    "cc",
    "center_prior",
    "frame_window",
    "gaussian_blur",
    "input_positions",
    "iter_frames",
    "kl_divergence",
    "list_trials",
    "nss",
    "parse_gaze_lines",
    "read_gaze",
    "replay_trial",
    "roc_auc",
    "score_trials",
    "shuffled_auc",
    "uniform_random",
]
