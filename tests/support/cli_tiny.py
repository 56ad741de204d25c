"""A tiny built-in configuration for the CLI tests (fast on one core)."""

TINY = {
    "dataset": "builtin",
    "dataset_options": {"num_samples": {"train": 48, "val": 12, "test": 24}, "frames": 1},
    "model_options": {"hidden": 4, "out_dim": 8},
    "fusion": "concat",
    "modulation": "OGM_GE",
    "alpha": 0.8,
    "epochs": 2,
    "batch_size": 16,
    "lr": 0.01,
    "device": "cpu",
    "progress": False,
}
