"""The design rules that keep the code readable: kernels import only numpy and numba (and
math, and each other), nothing in the kernels imports the rest of convtrain, and --help
never imports numba."""

import ast
import os
import subprocess
import sys

KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "convtrain", "kernels")


def test_kernel_modules_import_only_numpy_numba_math():
    for name in os.listdir(KERNELS):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(KERNELS, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert (module.split(".")[0] in {"numpy", "numba", "math"}
                        or module.startswith("convtrain.kernels.")), (name, module)


def test_help_and_summary_do_not_import_numba(repo_root):
    code = ("import sys\nfrom convtrain.cli import main\n"
            "for args in (['--help'], ['summary', sys.argv[1]]):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print('numba' in sys.modules, file=sys.stderr)\n")
    config = os.path.join(repo_root, "configs", "lenet5-mnist.yaml")
    proc = subprocess.run([sys.executable, "-c", code, config], capture_output=True, text=True)
    assert proc.stderr.strip() == "False"
