"""convtrain: a CNN trainer whose every loop can be read.

Importing the package is cheap: numba is imported only by the modules that
run kernels, so `convtrain --help` and config validation stay fast.
"""

from convtrain.version import __version__  # noqa: F401 (the package's version)
