"""Atari-HEAD gaze: reader on a synthetic trial in the published layout, replay, metrics worked by hand and
against independent implementations, and the end-to-end scorer."""

from __future__ import annotations

import csv
import io
import math
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fls.errors import ConfigError
from fls.gaze import (
    FIRST_INPUT,
    auc_judd,
    auc_rank,
    cc,
    frame_window,
    gaussian_blur,
    input_positions,
    iter_frames,
    kl_divergence,
    list_trials,
    nss,
    read_gaze,
    replay_trial,
    roc_auc,
    score_trials,
    shuffled_auc,
)
from fls.gaze.baselines import center_prior
from fls.models.renderer import upsample_to_frame

TRIAL = "100_RZ_3592991_Aug-24-10-38-14"
PREFIX = "RZ_3592991"
N_FRAMES = 45  # inputs at positions 16, 20, ..., 44
NO_GAZE_FROM = 29  # positions >= this have `null` gaze, so the input at 44 has no fixation
MALFORMED_POSITION = 7  # odd gaze tail: kept without gaze
SHORT_POSITION = 9  # fewer than 7 fields: kept without gaze
NULL_POSITIONS = {0, 12}
H, W = 210, 160


def frame_id(position: int) -> str:
    return f"{PREFIX}_{position + 1}"  # Atari-HEAD frame numbers start at 1


def make_trial(root: Path, *, missing: tuple[int, ...] = (), seed: int = 0) -> dict:
    """Write a trial in the published layout under ``root/breakout`` plus ``root/meta_data.csv``.

    Returns the RGB frames and the gaze points each kept row should parse to (per 0-based position).
    """
    rng = np.random.default_rng(seed)
    game_dir = root / "breakout"
    game_dir.mkdir(parents=True)
    # Few colours, as in Atari frames, so grayscale pooling differs from RGB pooling somewhere.
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    frames = [palette[rng.integers(0, 6, (H, W))] for _ in range(N_FRAMES)]
    gaze: list[np.ndarray] = []
    lines = ["frame_id,episode_id,score,duration(ms),unclipped_reward,action,gaze_positions"]
    for p in range(N_FRAMES):
        fields = [frame_id(p), "null" if p == 3 else str(p // 30), str(p), "null" if p == 0 else "57", "0", str(p % 18)]
        if p in NULL_POSITIONS or p >= NO_GAZE_FROM:
            tail, points = ["null"], np.zeros((0, 2))
        else:
            points = np.column_stack([rng.uniform(-5, W + 5, 1 + p % 5), rng.uniform(-5, H + 5, 1 + p % 5)])
            if p == 1:  # a repeated pixel, a half that rounds up, and points outside the frame
                points = np.array([[10.5, 20.49], [10.7, 19.6], [-3.0, 50.0], [170.0, 10.0], [80.0, 250.0]])
            if p == 2:
                points = np.array([[159.6, 100.0], [159.4, 209.4]])  # rounds to column 160 (out), then in
            text = [f"{v:.2f}" for v in points.ravel()]
            points = np.array([float(v) for v in text]).reshape(-1, 2)
            tail = text
        if p == MALFORMED_POSITION:
            tail = ["12.00", "30.00", "55.50"]
            points = np.zeros((0, 2))
        row = ",".join(fields + tail)
        if p == SHORT_POSITION:
            row = f"{frame_id(p)},0,9"
            points = np.zeros((0, 2))
        if p == 5:
            row += ","  # a trailing comma is harmless
        lines.append(row)
        gaze.append(points)
        if p == 10:
            lines.append("")  # blank line: ignored
            lines.append("garbage,row,1,2")  # no valid frame id: dropped
    lines.append(",".join([frame_id(4), "0", "0", "0", "0", "0", "1.0", "1.0"]))  # duplicate: dropped
    (game_dir / f"{TRIAL}.txt").write_text("\n".join(lines) + "\n")
    # Lexicographic member order (as `tar` of a folder may store it): frames arrive out of order.
    names = sorted(frame_id(p) for p in range(N_FRAMES) if p not in missing)
    with tarfile.open(game_dir / f"{TRIAL}.tar.bz2", "w:bz2") as archive:
        folder = tarfile.TarInfo(TRIAL)
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name in names:
            position = int(name.rsplit("_", 1)[1]) - 1
            ok, png = cv2.imencode(".png", cv2.cvtColor(frames[position], cv2.COLOR_RGB2BGR))
            assert ok
            info = tarfile.TarInfo(f"{TRIAL}/{name}.png")
            info.size = len(png)
            archive.addfile(info, io.BytesIO(png.tobytes()))
    (root / "meta_data.csv").write_text(
        "GameName,trial_id,subject_id,load_trial,highest_score,total_frame\n"
        f"breakout,100,RZ,0,37,{N_FRAMES}\n"
        "seaquest,200,JAW,0,1000,20000\n"
    )
    return {"frames": frames, "gaze": gaze, "game_dir": game_dir}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("atari_head")
    data = make_trial(root)
    data["root"] = root
    return data


def hand_pixels(points: np.ndarray) -> list[tuple[int, int]]:
    """(row, col) of each point, nearest pixel with halves up, dropping those outside (written with loops)."""
    out = []
    for x, y in points:
        col, row = math.floor(x + 0.5), math.floor(y + 0.5)
        if 0 <= col < W and 0 <= row < H:
            out.append((row, col))
    return out


# --------------------------------------------------------------------------- reader


def test_parse_report_counts(synthetic):
    trial = list_trials(synthetic["root"], "breakout")[0]
    rows, report = read_gaze(trial)
    assert report.header
    assert report.rows == N_FRAMES + 2  # + garbage row + duplicate
    assert len(rows) == report.frames == N_FRAMES
    assert [r.frame_id for r in rows] == [frame_id(p) for p in range(N_FRAMES)]
    assert report.malformed == 4  # odd tail, short row, garbage, duplicate
    assert report.dropped == 2  # garbage, duplicate
    assert report.frame_gaps == 0
    assert report.null_gaze == len(NULL_POSITIONS) + (N_FRAMES - NO_GAZE_FROM)
    assert len(report.problems) == 4 and any("line" in p and "duplicate" in p for p in report.problems)
    for p, row in enumerate(rows):
        np.testing.assert_array_equal(row.gaze, synthetic["gaze"][p].reshape(-1, 2))
    expected_points = sum(len(g) for g in synthetic["gaze"])
    assert report.gaze_points == expected_points
    inside = sum(len(hand_pixels(g)) for g in synthetic["gaze"])
    assert report.points_outside == expected_points - inside
    assert rows[0].duration_ms is None and rows[1].duration_ms == 57.0 and rows[3].episode_id is None
    assert rows[SHORT_POSITION].score == 9 and rows[SHORT_POSITION].action is None
    assert "4 malformed rows (2 dropped)" in report.summary()


def test_list_trials_layouts_and_errors(synthetic, tmp_path):
    root = synthetic["root"]
    for name in ("breakout", "Breakout", "BreakoutNoFrameskip-v4", "ALE/Breakout-v5"):
        (trial,) = list_trials(root, name)
        assert trial.name == TRIAL and trial.zip_file is None
        assert trial.meta["subject_id"] == "RZ" and trial.meta["trial_id"] == "100"
    with pytest.raises(ConfigError, match=r"no Atari-HEAD trials of game 'Pong'.*breakout.*seaquest"):
        list_trials(root, "Pong")
    with pytest.raises(ConfigError, match="lists 1 trials of it but they are not on disk"):
        list_trials(root, "Seaquest")
    with pytest.raises(ConfigError, match="does not exist"):
        list_trials(tmp_path / "nowhere", "breakout")

    # The same game as the published zip, read in place.
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "breakout.zip", "w") as archive:
        for path in synthetic["game_dir"].iterdir():
            archive.write(path, f"breakout/{path.name}")
    (trial,) = list_trials(zipped, "breakout")
    assert trial.zip_file == zipped / "breakout.zip" and trial.meta == {}
    assert [fid for fid, _ in iter_frames(trial)] == [frame_id(p) for p in range(N_FRAMES)]

    # An extracted frame folder in place of the archive.
    extracted = tmp_path / "extracted" / "breakout"
    extracted.mkdir(parents=True)
    (extracted / f"{TRIAL}.txt").write_bytes((synthetic["game_dir"] / f"{TRIAL}.txt").read_bytes())
    with tarfile.open(synthetic["game_dir"] / f"{TRIAL}.tar.bz2") as archive:
        archive.extractall(extracted, filter="data")
    (trial,) = list_trials(extracted.parent, "breakout")
    for (fid, rgb), expected in zip(iter_frames(trial), synthetic["frames"], strict=True):
        np.testing.assert_array_equal(rgb, expected, err_msg=fid)


def test_frames_decode_in_gaze_order(synthetic):
    (trial,) = list_trials(synthetic["root"], "breakout")
    out = list(iter_frames(trial))
    assert [fid for fid, _ in out] == [frame_id(p) for p in range(N_FRAMES)]
    for (_, rgb), expected in zip(out, synthetic["frames"], strict=True):
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(rgb, expected)


def test_missing_frame_is_a_config_error(tmp_path):
    make_trial(tmp_path, missing=(19,))
    (trial,) = list_trials(tmp_path, "breakout")
    with pytest.raises(ConfigError, match=rf"trial {TRIAL}.*frame {frame_id(19)} of the gaze file is missing"):
        for _ in replay_trial(trial, batch_size=4):
            pass


# --------------------------------------------------------------------------- replay


def test_window_indices():
    assert FIRST_INPUT == 16
    assert frame_window(16) == (3, 4, 7, 8, 11, 12, 15, 16)
    assert frame_window(40) == (27, 28, 31, 32, 35, 36, 39, 40)
    assert list(input_positions(N_FRAMES)) == [16, 20, 24, 28, 32, 36, 40, 44]
    assert list(input_positions(16)) == []


def test_replay_equals_preprocessing_by_hand(synthetic):
    (trial,) = list_trials(synthetic["root"], "breakout")
    batches = list(replay_trial(trial, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 2]
    items = [item for batch in batches for item in batch]
    frames, gaze = synthetic["frames"], synthetic["gaze"]
    for item, i in zip(items, [16, 20, 24, 28, 32, 36, 40, 44], strict=True):
        assert item.position == i
        # Preprocessing by hand: ALE grayscale, max of the pair in grayscale, INTER_AREA resize, oldest first.
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        expected = np.stack(
            [
                cv2.resize(np.maximum(gray[j - 1], gray[j]), (84, 84), interpolation=cv2.INTER_AREA)
                for j in (i - 12, i - 8, i - 4, i)
            ]
        )
        assert item.obs.dtype == np.uint8 and item.obs.shape == (4, 84, 84)
        np.testing.assert_array_equal(item.obs, expected)
        # Fixations pooled by hand over the 8 raw frames, with multiplicity.
        counts = np.zeros((H, W), np.int64)
        for j in (i - 13, i - 12, i - 9, i - 8, i - 5, i - 4, i - 1, i):
            for r, c in hand_pixels(gaze[j]):
                counts[r, c] += 1
        np.testing.assert_array_equal(item.fixations, counts)
        assert item.frame_ids == tuple(frame_id(j) for j in frame_window(i))
        assert item.frame_id == frame_id(i)
    assert items[-1].fixations.sum() == 0  # window of 44 lies entirely in the `null` gaze
    # The rounding rule, pinned: (10.5, 20.49) -> col 11, row 20; (10.7, 19.6) -> the same pixel.
    (first,) = [it for it in items if it.position == 16]
    assert first.fixations.sum() > 0
    pixel_counts = np.zeros((H, W), np.int64)
    for r, c in hand_pixels(gaze[1]):
        pixel_counts[r, c] += 1
    assert pixel_counts[20, 11] == 2 and pixel_counts.sum() == 2
    assert hand_pixels(gaze[2]) == [(209, 159)]
    # Batch size and max_inputs do not change the inputs.
    again = [item for batch in replay_trial(trial, batch_size=64, max_inputs=5) for item in batch]
    assert len(again) == 5
    for a, b in zip(again, items, strict=False):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.fixations, b.fixations)


# --------------------------------------------------------------------------- metrics by hand


def test_metrics_by_hand():
    rng = np.random.default_rng(0)
    fix = np.zeros((5, 7), np.int64)
    fix[2, 3] = 1
    one_hot = fix.astype(float)
    assert nss(one_hot, fix) == pytest.approx(math.sqrt(fix.size - 1), abs=1e-12)
    assert nss(np.ones((5, 7)), fix) == 0.0  # constant map: no information

    counts = np.zeros((H, W), np.int64)
    counts[rng.integers(0, H, 30), rng.integers(0, W, 30)] += 3
    same = gaussian_blur(counts, 5.0) * 17.0  # identical distribution up to scale
    assert kl_divergence(same, counts) == pytest.approx(0.0, abs=1e-12)  # exact by default
    support = np.count_nonzero(gaussian_blur(counts, 5.0))
    assert abs(kl_divergence(same, counts, eps=1e-7)) <= 1e-7 * support  # the eps form: off by <= eps per pixel
    assert kl_divergence(np.zeros((H, W)), counts) == math.inf
    hole = same.copy()
    hole[counts > 0] = 0.0  # zero where P > 0: undefined (infinite), finite with eps
    assert kl_divergence(hole, counts) == math.inf and math.isfinite(kl_divergence(hole, counts, eps=1e-7))
    assert cc(same, counts) == pytest.approx(1.0, abs=1e-12)

    others = np.zeros((H, W), np.int64)
    others[rng.integers(0, H, 50), rng.integers(0, W, 50)] = rng.integers(1, 4, 50)
    others[counts > 0] = 0
    assert shuffled_auc(np.full((H, W), 3.0), counts, others) == 0.5
    perfect = (counts > 0).astype(float)
    assert shuffled_auc(perfect, counts, others) == 1.0
    assert shuffled_auc(-perfect, counts, others) == 0.0
    assert auc_judd(perfect, counts) == 1.0 and auc_rank(perfect, counts) == 1.0
    assert roc_auc([1.0, 2.0], [1.0, 0.0]) == 0.875  # one tie counts 1/2: (0.5 + 1 + 1 + 1) / 4

    with pytest.raises(ValueError, match="no fixations"):
        nss(one_hot, np.zeros((5, 7), np.int64))
    with pytest.raises(ValueError, match="integer counts"):
        nss(one_hot, fix + 0.5)
    with pytest.raises(ValueError, match="no fixation to draw"):
        shuffled_auc(one_hot, fix, np.zeros((5, 7), np.int64))


# --------------------------------------------------------------------------- independent implementations


def loop_blur(counts: np.ndarray, sigma: float) -> np.ndarray:
    """Direct 2-D convolution with a 2-D kernel, zero outside the frame (no separability, no OpenCV)."""
    radius = math.ceil(3 * sigma)
    offsets = range(-radius, radius + 1)
    k1 = np.array([math.exp(-(d * d) / (2 * sigma * sigma)) for d in offsets])
    kernel = np.outer(k1, k1) / np.outer(k1, k1).sum()
    padded = np.pad(counts.astype(float), radius)
    out = np.zeros(counts.shape)
    for dy in offsets:
        for dx in offsets:
            out += (
                kernel[dy + radius, dx + radius]
                * padded[radius + dy : radius + dy + counts.shape[0], radius + dx : radius + dx + counts.shape[1]]
            )
    return out


def rank_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Mann-Whitney U from average ranks of the pooled sample (ties get their mean rank)."""
    pooled = np.concatenate([positives, negatives])
    order = np.argsort(pooled, kind="mergesort")
    ranks = np.empty(len(pooled))
    sorted_values = pooled[order]
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    n_pos, n_neg = len(positives), len(negatives)
    return (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_against_independent_implementations():
    rng = np.random.default_rng(1)
    saliency = gaussian_blur(rng.random((H, W)), 3.0) + 0.2 * center_prior((H, W))
    saliency[:20] = 0.0  # exact zeros: exercises the KL epsilon
    saliency = np.round(saliency, 3)  # ties: exercises the AUC's 1/2
    counts = np.zeros((H, W), np.int64)
    np.add.at(counts, (rng.integers(0, H, 60), rng.integers(0, W, 60)), 1)
    counts[5, 5] += 2  # a fixation on a zero of the map

    # NSS with loops.
    values = saliency.ravel().tolist()
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    total, weighted = 0, 0.0
    for (r, c), k in np.ndenumerate(counts):
        if k:
            weighted += k * (saliency[r, c] - mean) / std
            total += k
    assert nss(saliency, counts) == pytest.approx(weighted / total, abs=1e-6)

    # KL and CC with the direct blur.
    blurred = loop_blur(counts, 5.0)
    np.testing.assert_allclose(gaussian_blur(counts, 5.0), blurred, atol=1e-12)
    p = blurred / blurred.sum()
    q = saliency / saliency.sum()
    eps = 1e-7
    kl = sum(pi * math.log(eps + pi / (qi + eps)) for pi, qi in zip(p.ravel(), q.ravel(), strict=True) if pi > 0)
    assert kl_divergence(saliency, counts, eps=eps) == pytest.approx(kl, abs=1e-6)
    assert kl_divergence(saliency, counts) == math.inf  # the fixation at (5, 5) falls where the map is 0
    positive = saliency + 0.01
    q = positive / positive.sum()
    exact = sum(pi * math.log(pi / qi) for pi, qi in zip(p.ravel(), q.ravel(), strict=True) if pi > 0)
    assert kl_divergence(positive, counts) == pytest.approx(exact, abs=1e-9)
    assert cc(saliency, counts) == pytest.approx(np.corrcoef(saliency.ravel(), blurred.ravel())[0, 1], abs=1e-6)

    # The exact AUC with the rank formula (AUC-Judd is checked against pysaliency below).
    positives = np.repeat(saliency.ravel(), counts.ravel())
    negatives = saliency.ravel()[counts.ravel() == 0]
    assert auc_rank(saliency, counts) == pytest.approx(rank_auc(positives, negatives), abs=1e-12)

    # Shuffled AUC: 100 explicit splits with pairwise comparisons, vs ours, vs the exact expectation.
    others = np.zeros((H, W), np.int64)
    np.add.at(others, (rng.integers(30, H - 30, 300), rng.integers(20, W - 20, 300)), 1)
    norm = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    pos = np.repeat(norm.ravel(), counts.ravel())
    locations = np.flatnonzero(others)
    weights = others.ravel()[locations] / others.sum()

    def score(v: np.ndarray) -> np.ndarray:  # per negative value: P(pos > v) + P(pos == v) / 2
        return ((pos[None, :] > v[:, None]) + 0.5 * (pos[None, :] == v[:, None])).mean(axis=1)

    per_location = score(norm.ravel()[locations])
    expected = float((weights * per_location).sum())
    spread = math.sqrt(float((weights * (per_location - expected) ** 2).sum()))
    se = spread / math.sqrt(100 * len(pos))
    split_rng = np.random.default_rng(123)
    splits = [score(norm.ravel()[split_rng.choice(locations, len(pos), p=weights)]).mean() for _ in range(100)]
    independent = float(np.mean(splits))
    ours = shuffled_auc(saliency, counts, others, splits=100, seed=7)
    assert abs(independent - expected) < 5 * se
    assert abs(ours - expected) < 5 * se
    assert ours == shuffled_auc(saliency, counts, others, splits=100, seed=7)  # seeded
    assert 0.02 < spread  # the check above is not vacuous


def test_kl_and_auc_judd_worked_by_hand():
    # sigma 0: P is the fixation counts normalised. P = (1/4, 1/4, 0, 1/2), Q = (1, 2, 3, 2) / 8.
    counts = np.array([[1, 1, 0, 2]])
    saliency = np.array([[1.0, 2.0, 3.0, 2.0]])
    assert kl_divergence(saliency, counts, sigma=0) == pytest.approx(0.75 * math.log(2), abs=1e-15)
    eps = 1e-3
    by_hand = 0.25 * math.log(eps + 0.25 / (0.125 + eps)) + 0.25 * math.log(eps + 1 / (1 + 4 * eps))
    by_hand += 0.5 * math.log(eps + 0.5 / (0.25 + eps))
    assert kl_divergence(saliency, counts, sigma=0, eps=eps) == pytest.approx(by_hand, abs=1e-15)
    assert kl_divergence(np.array([[1.0, 0.0, 3.0, 2.0]]), counts, sigma=0) == math.inf

    # Fixations on 0.8 and 0.5; negatives 0.9, 0.7, 0.3, 0.1. Thresholds 0.8: (FPR, TPR) = (1/4, 1/2);
    # 0.5: (2/4, 1). Trapezoids from (0, 0) to (1, 1): 1/16 + 3/16 + 1/2 = 3/4. Exact: (3/4 + 2/4) / 2.
    saliency = np.array([[0.9, 0.8, 0.7, 0.5, 0.3, 0.1]])
    counts = np.array([[0, 1, 0, 1, 0, 0]])
    assert auc_judd(saliency, counts) == 0.75 and auc_rank(saliency, counts) == 0.625
    # The difference is FPR(lowest fixated value) / (2 n) = 0.5 / 4.
    # Ties and a pixel fixated twice: positives 0.8, 0.8, 0.5; negatives 0.8, 0.5, 0.2. Points (1/3, 2/3),
    # (2/3, 1): 1/9 + 5/18 + 1/3 = 13/18; exact: (0.5 + 1 + 1) * 2 + (0 + 0.5 + 1) = 6.5 of 9 pairs.
    saliency = np.array([[0.8, 0.8, 0.5, 0.5, 0.2]])
    counts = np.array([[2, 0, 1, 0, 0]])
    assert auc_judd(saliency, counts) == pytest.approx(13 / 18, abs=1e-15)
    assert auc_rank(saliency, counts) == pytest.approx(13 / 18, abs=1e-15)
    # One fixation, on 0.5: the sweep is (0, 0) -> (3/4, 1) -> (1, 1); exact: the tie with 0.5 counts 1/2.
    counts = np.array([[0, 0, 1, 0, 0]])
    assert auc_judd(saliency, counts) == pytest.approx(1 - 3 / 4 / 2) and auc_rank(saliency, counts) == 0.375


def import_pysaliency(monkeypatch) -> object:
    """pysaliency as installed. Two shims for this environment, neither touching what is compared: its package
    import needs ``pkg_resources`` (gone from setuptools >= 81; only its MATLAB model wrappers use it), and its
    ROC calls ``np.trapz`` (removed in numpy 2.4; ``np.trapezoid`` is the same function)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import types

        stub = types.ModuleType("pkg_resources")
        stub.resource_string = stub.resource_listdir = None  # type: ignore[attr-defined]
        monkeypatch.setitem(__import__("sys").modules, "pkg_resources", stub)
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return pytest.importorskip("pysaliency")


@pytest.mark.slow  # importing pysaliency and compiling its numba ROC: ~10 s
def test_auc_judd_equals_pysaliency(monkeypatch):
    pysaliency = import_pysaliency(monkeypatch)
    rng = np.random.default_rng(3)
    for ties, n_fix, repeats in [(False, 12, 0), (False, 40, 5), (True, 12, 3), (True, 60, 10), (False, 1, 0)]:
        saliency = rng.random((H, W))
        if ties:
            saliency = np.round(saliency, 2)  # many fixated values tie with each other and with negatives
        ys, xs = rng.integers(0, H, n_fix), rng.integers(0, W, n_fix)
        ys, xs = np.concatenate([ys, ys[:repeats]]), np.concatenate([xs, xs[:repeats]])  # duplicate fixations
        counts = np.zeros((H, W), np.int64)
        np.add.at(counts, (ys, xs), 1)

        class Fixed(pysaliency.SaliencyMapModel):
            def _saliency_map(self, stimulus, s=saliency):
                return s

        stimuli = pysaliency.Stimuli([np.zeros((H, W, 3), np.uint8)])
        fixations = pysaliency.Fixations.create_without_history(xs.astype(float), ys.astype(float), np.zeros(len(xs)))
        model = Fixed(caching=False)
        judd = model.AUC_Judd(stimuli, fixations, jitter=False)
        (per_image,) = model.AUC_per_image(stimuli, fixations, nonfixations="unfixated", thresholds="fixations")
        assert auc_judd(saliency, counts) == pytest.approx(judd, abs=1e-9)
        assert auc_judd(saliency, counts) == pytest.approx(per_image, abs=1e-9)
        # pysaliency's exact AUC over the same positives and negatives ("all" thresholds) is auc_rank.
        (exact,) = model.AUC_per_image(stimuli, fixations, nonfixations="unfixated", thresholds="all")
        assert auc_rank(saliency, counts) == pytest.approx(exact, abs=1e-9)
        assert auc_judd(saliency, counts) > auc_rank(saliency, counts)  # not the same number


def test_kl_equals_pysaliency(monkeypatch):
    pysaliency = import_pysaliency(monkeypatch)
    from pysaliency.metrics import MIT_KLDiv, image_based_kl_divergence

    rng = np.random.default_rng(4)
    counts = np.zeros((H, W), np.int64)
    np.add.at(counts, (rng.integers(80, 130, 25), rng.integers(60, 100, 25)), 1)
    saliency = gaussian_blur(rng.random((H, W)), 2.0) + 0.3 * center_prior((H, W))
    assert pysaliency is not None
    # Exact KL: pysaliency's form sum P (log P - log Q) needs P > 0 everywhere (0 * log 0 is NaN there), so
    # compare where the blur (sigma 40, 3 sigma = 120 px) covers the whole frame.
    blurred = gaussian_blur(counts, 40.0)
    assert (blurred > 0).all()
    reference = image_based_kl_divergence(saliency, blurred, minimum_value=0)
    assert kl_divergence(saliency, counts, sigma=40.0) == pytest.approx(reference, abs=1e-9)
    # The MIT benchmark's regularised KL (eps = 2.2204e-16 in and outside the log), with the sigma 5 blur.
    eps = 2.2204e-16
    with np.errstate(divide="ignore"):  # pysaliency takes log(0) of P outside its support (weight 0)
        mit = MIT_KLDiv(saliency, gaussian_blur(counts, 5.0))
    assert kl_divergence(saliency, counts, eps=eps) == pytest.approx(mit, abs=1e-9)
    # With eps that small the regularised KL is the exact one on a strictly positive map.
    assert kl_divergence(saliency, counts, eps=eps) == pytest.approx(kl_divergence(saliency, counts), abs=1e-9)


# --------------------------------------------------------------------------- end to end


def simple_saliency(obs: np.ndarray) -> dict[str, np.ndarray]:
    return {"last_frame": obs[:, -1].astype(np.float32), "motion": np.abs(obs[:, -1].astype(float) - obs[:, 0])}


def test_score_trials_end_to_end(synthetic, tmp_path):
    trials = list_trials(synthetic["root"], "breakout")
    results = score_trials(trials, simple_saliency, None, batch_size=3, splits=20, progress=False)
    assert results.methods == ["last_frame", "motion", "center_prior", "random"]
    assert results.skipped == {TRIAL: 1}  # the input at 44 has no fixation
    assert len(results.records) == 7 * 4
    assert results.reports[TRIAL].malformed == 4

    # Same numbers in other batch sizes (seeding is per trial and per input).
    again = score_trials(trials, simple_saliency, ["last_frame", "motion"], batch_size=64, splits=20, progress=False)
    assert again.records == results.records

    # One record recomputed from the replay with the public functions.
    item = next(it for batch in replay_trial(trials[0]) for it in batch if it.position == 24)
    frame_map = upsample_to_frame(torch.from_numpy(item.obs[-1][None].astype(np.float64)))[0].numpy()
    record = next(r for r in results.records if r[2] == 24 and r[5] == "last_frame")
    assert record[3] == frame_id(24) and record[4] == int(item.fixations.sum())
    assert record[6] == pytest.approx(nss(frame_map, item.fixations), abs=1e-9)
    assert record[7] == pytest.approx(kl_divergence(frame_map, item.fixations), abs=1e-9)
    assert record[9] == pytest.approx(cc(frame_map, item.fixations), abs=1e-9)
    # sAUC negatives need an input with fixations >= 16 raw frames away: the input at 28 has none here.
    for r in results.records:
        assert math.isnan(r[8]) if r[2] == 28 else 0.0 <= r[8] <= 1.0

    csv_path = results.write_csv(tmp_path / "out" / "gaze_frames.csv")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["game", "trial", "position", "frame_id", "fixations", "method", "nss", "kl", "sauc", "cc"]
    assert len(rows) == 28 and {r["method"] for r in rows} == set(results.methods)
    assert float(rows[0]["nss"]) == pytest.approx(results.records[0][6], rel=1e-8)
    assert not list((tmp_path / "out").glob("*.tmp"))

    md_path = results.write_markdown(tmp_path / "out" / "gaze.md")
    text = md_path.read_text()
    assert "| Game | Method | NSS ↑ | KL ↓ | sAUC ↑ | CC ↑ | Frames |" in text
    for method in results.methods:
        line = next(line for line in text.splitlines() if line.startswith(f"| breakout | {method} |"))
        assert line.endswith("| 7 |") and line.count("±") == 4 and "(n=6)" in line  # sAUC over 6 frames
    assert "1 inputs without fixation skipped" in text and "4 malformed rows" in text

    summary = results.summary()
    nss_values = [r[6] for r in results.records if r[5] == "motion"]
    assert summary["gaze/breakout/motion/nss"] == pytest.approx(np.mean(nss_values))
    assert summary["gaze/breakout/motion/nss_std"] == pytest.approx(np.std(nss_values))
    assert summary["gaze/breakout/random/frames"] == 7 and summary["gaze/skipped_inputs"] == 1
    sauc_values = [r[8] for r in results.records if r[5] == "motion" and r[2] != 28]
    assert summary["gaze/breakout/motion/sauc"] == pytest.approx(np.mean(sauc_values))

    # The exact KL by default: the motion map is 0 under the fixations of the input at 20 (undefined KL), which
    # is left out of the mean, counted and noted under the table.
    kl_motion = {r[2]: r[7] for r in results.records if r[5] == "motion"}
    assert kl_motion[20] == math.inf and all(math.isfinite(v) for p, v in kl_motion.items() if p != 20)
    assert summary["gaze/breakout/motion/kl"] == pytest.approx(np.mean([v for p, v in kl_motion.items() if p != 20]))
    assert summary["gaze/breakout/motion/kl_dropped_frames"] == 1 and summary["gaze/kl_dropped_frames"] == 1
    assert summary["gaze/breakout/last_frame/kl_dropped_frames"] == 0
    assert "left out of its mean (1 frames: breakout motion 1)" in text
    regularised = score_trials(trials, simple_saliency, None, splits=20, eps=1e-7, progress=False)
    assert regularised.summary()["gaze/kl_dropped_frames"] == 0 and "eps = 1e-07" in regularised.to_markdown()

    with pytest.raises(ValueError, match="reserved"):
        score_trials(trials, simple_saliency, ["random"], progress=False)
    with pytest.raises(ValueError, match="no map for"):
        score_trials(trials, simple_saliency, ["gradcam"], progress=False)
