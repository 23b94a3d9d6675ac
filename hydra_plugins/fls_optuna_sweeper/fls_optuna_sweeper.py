"""Hydra's Optuna sweeper (hydra-optuna-sweeper), made safe to kill and run again.

Selected by ``hydra/sweeper=optuna_search`` (``experiment=lambda_search`` does it). It keeps the plugin's config
(sampler, direction, storage, study_name, n_trials, n_jobs, search_space, and sweep overrides such as
``model.entropy_lambda=interval(0,0.01)``) and its way of asking, launching and telling trials, and changes what
makes a killed search hard to continue:

- the study's SQLite file may live inside the sweep folder: the folder is created before the study opens;
- running the same command with the same ``hydra.sweep.dir`` continues the study: trials finished before count
  towards ``n_trials``, a trial that was running when the search was killed is marked failed and replaced, and new
  trials get new job folders (the plugin numbers jobs from 0 again, so trial 0 of the second start would train
  into the folder of trial 0 of the first);
- a trial whose objective is missing or NaN (no game finished within its budget) is marked failed and the search
  goes on (Optuna refuses NaN and the plugin then stops the whole search);
- each trial's folder, parameters and objective are printed as it ends, the objective with what it is and its
  standard error (the run's objective.json, fls/objective.py), which the study also keeps as the trial's user
  attributes ``objective_source``, ``objective_games`` and ``objective_standard_error``.

Lives under ``hydra_plugins`` because Hydra instantiates sweepers from that package only.
"""

from __future__ import annotations

import math
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

from fls.objective import read as read_objective

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the search extra is not installed: keep Hydra's plugin scan quiet
    OptunaSweeper = None  # type: ignore[assignment,misc]


def _format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _current(distribution: Any) -> Any:
    """The plugin builds Optuna 2's distribution classes (deprecated since Optuna 3, warning on every load of
    the study); store their Optuna 3 equivalents instead."""
    from optuna.distributions import FloatDistribution, IntDistribution

    if type(distribution) is not FloatDistribution and isinstance(distribution, FloatDistribution):
        return FloatDistribution(distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    if type(distribution) is not IntDistribution and isinstance(distribution, IntDistribution):
        return IntDistribution(distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    return distribution


def run_search(impl: Any, arguments: list[str]) -> None:
    """Ask, launch and tell trials until the study holds ``impl.n_trials`` finished ones (``impl``: the plugin's
    OptunaSweeperImpl after ``setup``, which holds the launcher, the search space and the study settings)."""
    import optuna
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
    from omegaconf import OmegaConf
    from optuna.distributions import BaseDistribution
    from optuna.trial import TrialState

    search_space, fixed = dict(impl.search_space), {}
    for override in OverridesParser.create().parse_overrides(arguments):
        with warnings.catch_warnings():  # deprecated distribution classes, replaced below
            warnings.simplefilter("ignore", FutureWarning)
            value = create_optuna_distribution_from_override(override)
        if isinstance(value, BaseDistribution):
            search_space[override.get_key_element()] = value
        else:
            fixed[override.get_key_element()] = value
    for name in fixed:
        search_space.pop(name, None)
    search_space = {name: _current(distribution) for name, distribution in search_space.items()}
    direction = impl.direction.name if isinstance(impl.direction, Enum) else str(impl.direction)

    sweep_dir = Path(str(impl.sweep_dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    study = optuna.create_study(
        study_name=impl.study_name, storage=impl.storage, sampler=impl.sampler, direction=direction, load_if_exists=True
    )
    interrupted = [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for trial in interrupted:
        study.tell(trial.number, state=TrialState.FAIL)
    finished = len(study.trials) - len(interrupted)
    job = len(study.trials)  # the next free job folder: trial numbers and job folders stay in step
    remaining = max(0, int(impl.n_trials) - finished)
    where = impl.storage or "memory (not resumable: set hydra.sweeper.storage)"
    note = f", {len(interrupted)} interrupted (marked failed)" if interrupted else ""
    print(
        f"optuna study '{study.study_name}' in {where}: {finished} of {impl.n_trials} trials done{note}; "
        f"each trial writes to {sweep_dir}/<trial>/",
        flush=True,
    )
    while remaining > 0:
        batch = min(remaining, max(1, int(impl.n_jobs)))
        trials = [study.ask() for _ in range(batch)]
        overrides = []
        for trial in trials:
            for name, distribution in search_space.items():
                trial._suggest(name, distribution)  # as the plugin does: takes any distribution object
            overrides.append(tuple(f"{k}={v}" for k, v in {**trial.params, **fixed}.items()))
        returns = impl.launcher.launch(overrides, initial_job_idx=job)
        for trial, ret in zip(trials, returns, strict=True):
            try:
                value = ret.return_value  # raises the job's exception if the job failed
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            hydra_cfg = ret.hydra_cfg
            folder = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir", default=None) if hydra_cfg else sweep_dir
            line = f"trial {trial.number} ({folder}): {_format_params(trial.params)}"
            if value is None or not math.isfinite(float(value)):
                study.tell(trial, state=TrialState.FAIL)
                print(f"{line} -> no objective (marked failed)", flush=True)
            else:
                recorded = read_objective(Path(str(folder))) if folder else None
                described = f"{float(value):g}"
                if recorded is not None and recorded.value == float(value):
                    described = recorded.describe()
                    trial.set_user_attr("objective_source", recorded.source)
                    trial.set_user_attr("objective_games", recorded.games)
                    if math.isfinite(recorded.standard_error):
                        trial.set_user_attr("objective_standard_error", recorded.standard_error)
                study.tell(trial, float(value))
                print(f"{line} -> {described}", flush=True)
        job += batch
        remaining -= batch

    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        print("optuna: no trial produced an objective", flush=True)
        return
    best = study.best_trial
    results = sweep_dir / "optimization_results.yaml"
    OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": best.params, "best_value": best.value}), results)
    print(f"best trial {best.number}: {_format_params(best.params)} -> {best.value:g} ({results})", flush=True)


if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):  # type: ignore[misc,valid-type]
        """The Optuna sweeper with resumable studies, one line per trial and NaN objectives as failed trials."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with warnings.catch_warnings():  # the plugin converts search_space into deprecated classes (see _current)
                warnings.simplefilter("ignore", FutureWarning)
                super().__init__(*args, **kwargs)

        def sweep(self, arguments: list[str]) -> None:
            """Run (or continue) the search; see the module's docstring."""
            run_search(self.sweeper, arguments)
