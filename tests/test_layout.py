"""The design rules that keep the code readable: kernels import only numpy and numba (and
math, and each other), nothing in the kernels imports the rest of convtrain, --help never
imports numba, and no module, function or CLI command outgrows one reading."""

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


def oversized(package_root):
    """Modules over 400 lines, functions over 60, and CLI commands whose body (docstring
    aside) is over 25 lines: short enough to hold in one's head, a thin CLI."""
    found = []
    for folder, _, names in os.walk(package_root):
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            where = os.path.relpath(path, os.path.dirname(package_root))
            if text.count("\n") > 400:
                found.append(f"{where}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if node.end_lineno - node.lineno + 1 > 60:
                    found.append(f"{where}:{node.lineno} {node.name}: "
                                 f"{node.end_lineno - node.lineno + 1} lines")
                if name == "cli.py" and any(getattr(getattr(d, "func", None), "attr", "")
                                            == "command" for d in node.decorator_list):
                    body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
                    if body[-1].end_lineno - body[0].lineno + 1 > 25:
                        found.append(f"{where}:{node.lineno} command {node.name}: "
                                     f"{body[-1].end_lineno - body[0].lineno + 1} body lines")
    return found


def test_no_module_over_400_lines_no_function_over_60_no_command_over_25(repo_root):
    assert oversized(os.path.join(repo_root, "convtrain")) == []


def test_the_size_check_finds_a_long_function(tmp_path):
    package = tmp_path / "convtrain"
    package.mkdir()
    (package / "long.py").write_text("def f():\n" + "    x = 1\n" * 60)
    assert oversized(str(package)) == ["convtrain/long.py:1 f: 61 lines"]
