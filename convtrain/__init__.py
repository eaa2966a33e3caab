"""convtrain: a CNN trainer whose every loop can be read.

Importing the package is cheap: numba is imported only by the modules that
run kernels, so `convtrain --help` and config validation stay fast.
"""

__version__ = "0.1.0"
