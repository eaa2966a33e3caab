"""Numba kernels. These modules import only numpy and numba; nothing here imports convtrain."""
