import os
import sys

import pytest

from convtrain.runtime import prepare_environment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
# The settings the CLI makes before NumPy and Numba load (convtrain.runtime), made before
# any test module loads them: a module that imports a kernel module first (test_augment.py)
# had Numba keep every kernel this process compiled in the checkout's
# convtrain/kernels/__pycache__ instead of the kernel cache folder.
prepare_environment()


@pytest.fixture
def write_config(tmp_path):
    """Write YAML text to a file in tmp_path and return its path."""

    def write(text, name="net.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def repo_root():
    return ROOT
