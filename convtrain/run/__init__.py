"""A training run: the loop, its folder, log, checkpoints, kernels compiled, processes."""
