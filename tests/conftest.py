import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


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
