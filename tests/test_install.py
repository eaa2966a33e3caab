"""The install path: a regular install replaced by an editable one (`make demo` then `make
test`) must leave nothing behind that shadows the package.

pip removes exactly the files it installed, then the folders left empty. Anything else in
the package folder (Numba's kernel cache, if it were written there) keeps
`site-packages/convtrain` alive as a folder without `__init__.py`, which Python then takes
for a namespace package ahead of the editable install's finder: `from convtrain import
__version__` fails in the installed command. Real subprocesses, a copy of the package as
the regular install, one small kernel compiled (a few seconds on a cold cache).
"""

import os
import shutil
import subprocess
import sys

RUN_A_KERNEL = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from convtrain.layers.base import kernels  # the runtime defaults, as the CLI and layers set them
leaky_relu_forward = kernels("elementwise").leaky_relu_forward
assert leaky_relu_forward.py_func.__code__.co_filename.startswith(sys.argv[1])
x = np.linspace(-1, 1, 8, dtype=np.float32)
leaky_relu_forward(x, np.float32(0.0), np.empty_like(x), np.empty(8, dtype=np.bool_))
"""

# What setuptools' editable install puts on sys.meta_path (__editable___*_finder.py): a finder
# appended after the path finder, mapping the package name to the source tree.
IMPORT_AS_EDITABLE = """
import sys
from importlib.util import spec_from_file_location
site, source = sys.argv[1:]
sys.path.insert(0, site)

class EditableFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "convtrain":
            return spec_from_file_location(name, source + "/__init__.py")

sys.meta_path.append(EditableFinder)
import convtrain
print(convtrain.__version__)
"""


def _files(root):
    return {os.path.join(d, f) for d, _, names in os.walk(root) for f in names}


def _uninstall(installed, package):
    """What pip does: remove the recorded files, then the folders that are left empty."""
    for path in installed:
        os.remove(path)
    for folder, _, _ in sorted(os.walk(package), key=lambda entry: -len(entry[0])):
        if not os.listdir(folder):
            os.rmdir(folder)


def test_a_regular_install_replaced_by_an_editable_one_still_imports(tmp_path, repo_root):
    site = tmp_path / "site-packages"
    package = site / "convtrain"
    shutil.copytree(os.path.join(repo_root, "convtrain"), package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    installed = _files(package)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", RUN_A_KERNEL, str(site)], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(os.path.relpath(path, site) for path in _files(package) - installed)

    _uninstall(installed, package)
    proc = subprocess.run([sys.executable, "-S", "-c", IMPORT_AS_EDITABLE, str(site),
                           os.path.join(repo_root, "convtrain")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip(), (
        f"{proc.stderr.strip().splitlines()[-1:]}; left in the package folder: {written}")
    assert not package.exists()
