"""fls's resumable Optuna sweeper for Hydra (configs/hydra/sweeper/optuna_search.yaml)."""
