"""What convtrain does, as files to compare before and after a change that must not alter it
(a refactor): for every config in configs/, `summary`, `trace --format json`, and the
metrics.jsonl of a seeded `train --max-steps 30` logging every step (clock fields removed),
and the sha256 of each array its checkpoint holds.

    python scripts/behaviour_snapshot.py OUT_FOLDER        # then: diff -r BEFORE AFTER

Runs the `convtrain` beside this Python (the checkout's .venv), in a scratch folder holding
the data the configs name: synthetic CIFAR-10 (scripts/make_synthetic_cifar.py) and
synthetic MNIST .gz files (scripts/make_synthetic_mnist.py), both seeded. Prints each file's sha256.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from make_synthetic_mnist import write_mnist  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_FIELDS = {"seconds", "images_per_s", "forward_ms", "backward_ms"}


def _without_clocks(record):
    if isinstance(record, dict):
        return {k: _without_clocks(v) for k, v in record.items() if k not in CLOCK_FIELDS}
    return record


def _weights(checkpoint):
    """One line per array of the checkpoint: its name and the sha256 of its bytes."""
    with np.load(checkpoint, allow_pickle=False) as arrays:
        return "".join(f"{name} {hashlib.sha256(arrays[name].tobytes()).hexdigest()}\n"
                       for name in sorted(arrays.files) if not name.startswith("meta"))


def _convtrain(*args, cwd):
    program = os.path.join(os.path.dirname(sys.executable), "convtrain")
    done = subprocess.run([program, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"convtrain {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=False)
    with tempfile.TemporaryDirectory() as scratch:
        os.makedirs(os.path.join(scratch, "data"))
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_cifar.py"),
                        os.path.join(scratch, "data", "cifar-10-binary.tar.gz"),
                        "--per-file", "200"], check=True, capture_output=True)
        write_mnist(os.path.join(scratch, "data"), train=512, test=64)
        for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
            config, stem = os.path.join(ROOT, "configs", name), name.removesuffix(".yaml")
            files = {f"{stem}.summary.txt": _convtrain("summary", config, cwd=scratch),
                     f"{stem}.trace.json": _convtrain("trace", config, "--format", "json",
                                                      cwd=scratch)}
            if name != "seed-example.yaml":  # names no data: nothing to train on
                run = os.path.join(scratch, "runs", stem)
                _convtrain("train", config, "--max-steps", "30", "--quiet", "--out", run,
                           "--set", "seed=1", "--set", "log.every=1", cwd=scratch)
                with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as handle:
                    records = [_without_clocks(json.loads(line)) for line in handle]
                files[f"{stem}.metrics.jsonl"] = "".join(json.dumps(r) + "\n" for r in records)
                files[f"{stem}.weights.txt"] = _weights(os.path.join(run, "checkpoint-last.npz"))
            for file_name, text in files.items():
                with open(os.path.join(out, file_name), "w", encoding="utf-8") as handle:
                    handle.write(text.replace(scratch, "SCRATCH"))
                print(hashlib.sha256(text.replace(scratch, "SCRATCH").encode()).hexdigest()[:16],
                      file_name)


if __name__ == "__main__":
    main()
