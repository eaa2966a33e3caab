"""How to install what an optional extra brings, as a command that works from where the
user is: `pip install 'convtrain[images]'` failed outside the venv (no convtrain on the
index there, or, on a public index, another project of that name), so hints name the
packages the extra brings, installed into the Python that runs convtrain."""

import os
import shlex
import sys

# What each extra of pyproject.toml brings, as pip names it.
EXTRAS = {"images": ("Pillow",), "plot": ("matplotlib",), "tensorboard": ("tensorboardX",),
          "onnx": ("onnx",), "mpi": ("mpi4py", "mpich")}


def pip_install(extra):
    """`PYTHON -m pip install PACKAGES` for the extra: this very Python (`.venv/bin/python`
    after `make demo`: relative to the working directory when it lies under it)."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return f"{shlex.quote(python)} -m pip install {' '.join(EXTRAS[extra])}"
