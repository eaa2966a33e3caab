"""convtrain against PyTorch on LeNet-5, side by side, in one run.

    pip install torch==2.13.0          # the CPU wheel; or: pip install -e '.[bench]'
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py [--threads 2]

Each measurement runs in a fresh worker process (PyTorch's OpenMP runtime slows other
packages in the same process), convtrain and PyTorch alternating, after warm-up steps;
JIT compilation happens in the warm-up and is never timed. Printed: training images/s of
both and their ratio at batch 32, 64 and 256 (median over rounds); per-layer forward and
backward ms at batch 64; each conv kernel's GFLOP/s beside NumPy's float32 matmul (the
practical ceiling); and the peak RSS of a training worker of each.

Both train configs/lenet5-mnist.yaml's network (conv 6@5x5 pad 2, relu, maxpool,
conv 16@5x5, relu, maxpool, dense 120-84-10) on random 28x28 images with SGD
(lr 0.05, momentum 0.9, weight decay 5e-4) and softmax cross-entropy, in float32.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "lenet5-mnist.yaml")
BATCHES = (32, 64, 256)
MIN_SECONDS = 1.5   # timed steps run at least this long...
MIN_STEPS = 5       # ...and at least this many
WARMUP_STEPS = 3


def synthetic(batch, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    return x, y


def timed_steps(step):
    """Warm up, then run step() until MIN_SECONDS and MIN_STEPS; returns seconds per step."""
    for _ in range(WARMUP_STEPS):
        step()
    times = []
    started = time.perf_counter()
    while len(times) < MIN_STEPS or time.perf_counter() - started < MIN_SECONDS:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def median_ms(function, repeats=100):
    """Median ms of `repeats` calls after one untimed call. 100 calls of a sub-millisecond
    kernel span about 0.1 s, long enough that one busy moment on a shared machine does
    not move the median."""
    function()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        function()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# ---------------------------------------------------------------- convtrain worker

def convtrain_worker(mode, batch, threads):
    from convtrain.runtime import prepare_numba

    prepare_numba(threads)
    from convtrain.config import load_config
    from convtrain.network import Network
    from convtrain.optim import Optimizer

    config = load_config(CONFIG)
    network = Network(config)
    optimizer = Optimizer(config.optimizer, network)
    x, y = synthetic(batch)

    def step():
        network.loss_and_gradients(x, y, input_grad=False)
        optimizer.step(config.optimizer.lr)

    if mode == "train":
        return {"images_per_s": batch / timed_steps(step)}
    if mode == "layers":
        from convtrain.timing import time_network

        result = time_network(config, batch, 20)
        return {"layers": [[r["name"], r["forward_ms"], r["backward_ms"]]
                           for r in result["layers"]],
                "kernels": _convtrain_kernels(network, x)}
    raise ValueError(mode)


def _convtrain_kernels(network, x):
    """ms of each conv kernel of each conv layer, on that layer's real input."""
    import numpy as np

    from convtrain.kernels.conv import (conv2d_backward_input, conv2d_backward_weight,
                                        conv2d_forward)

    rows = []
    out = x
    for layer in network.layers:
        if layer.spec.type == "conv2d":
            xp = layer.pad(out)
            w = layer.correlation_kernel()
            sh, sw = layer.spec.stride
            y = np.empty((len(x),) + layer.spec.out_shape, dtype=np.float32)
            dout = np.ones_like(y)
            dw, dxp = np.empty_like(w), np.empty_like(xp)
            b = layer.params["bias"]
            flops = layer.spec.flops() * len(x)
            rows.append([layer.name, flops,
                         median_ms(lambda: conv2d_forward(xp, w, b, sh, sw, y)),
                         median_ms(lambda: conv2d_backward_weight(xp, dout, sh, sw, dw)),
                         median_ms(lambda: conv2d_backward_input(dout, w, sh, sw, dxp))])
        out = layer.forward(out)
    return rows


def ceiling_worker(mode, batch, threads, n=2048):
    """NumPy's float32 matmul at n=2048 with `threads` BLAS threads: the practical ceiling.
    Its own process, because convtrain pins BLAS to one thread per Numba thread."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    ms = median_ms(lambda: a @ a, repeats=5)
    return {"gflops": 2 * n ** 3 / (ms / 1e3) / 1e9}


# ---------------------------------------------------------------- PyTorch worker

def torch_worker(mode, batch, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = [("conv1", nn.Conv2d(1, 6, 5, padding=2)), ("relu2", nn.ReLU()),
              ("maxpool3", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(6, 16, 5)),
              ("relu5", nn.ReLU()), ("maxpool6", nn.MaxPool2d(2)), ("flatten7", nn.Flatten()),
              ("fc1", nn.Linear(400, 120)), ("relu9", nn.ReLU()), ("fc2", nn.Linear(120, 84)),
              ("relu11", nn.ReLU()), ("fc3", nn.Linear(84, 10))]
    model = nn.Sequential(*[module for _, module in layers])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = synthetic(batch)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    if mode == "train":
        return {"images_per_s": batch / timed_steps(step)}
    if mode == "layers":
        return {"layers": _torch_layers(layers, x), "kernels": _torch_kernels(layers, x)}
    raise ValueError(mode)


def _torch_layers(layers, x):
    """Per-layer forward and backward ms, each layer run on its own cut of the graph. The
    first layer's backward computes parameter gradients only, as in training (and as
    convtrain's `time` does)."""
    import torch

    rows = []
    inputs = [x]
    for _, module in layers:
        with torch.no_grad():
            inputs.append(module(inputs[-1]))
    for index, ((name, module), inp, out) in enumerate(zip(layers, inputs, inputs[1:])):
        leaf = inp.detach().requires_grad_(index > 0)
        grad = torch.ones_like(out)

        def forward():
            module(leaf)

        def backward():
            leaf.grad = None
            out = module(leaf)
            if out.requires_grad:  # a parameterless first layer has nothing to do
                torch.autograd.backward(out, grad)

        forward_ms = median_ms(forward)
        rows.append([name, forward_ms, max(median_ms(backward) - forward_ms, 0.0)])
    return rows


def _torch_kernels(layers, x):
    import torch
    import torch.nn.functional as F

    rows = []
    out = x
    for name, module in layers:
        if isinstance(module, torch.nn.Conv2d):
            w, b, pad = module.weight.detach(), module.bias.detach(), module.padding
            y = F.conv2d(out, w, b, padding=pad)
            dout = torch.ones_like(y)
            rows.append([name,
                         median_ms(lambda: F.conv2d(out, w, b, padding=pad)),
                         median_ms(lambda: torch.nn.grad.conv2d_weight(out, w.shape, dout,
                                                                       padding=pad)),
                         median_ms(lambda: torch.nn.grad.conv2d_input(out.shape, w, dout,
                                                                      padding=pad))])
        with torch.no_grad():
            out = module(out)
    return rows


# ---------------------------------------------------------------- orchestration

def _median_tables(results):
    """Cell-wise median of several workers' "layers" and "kernels" tables (rows of
    [name, number, ...]); the names come from the first."""
    merged = {}
    for key in ("layers", "kernels"):
        rows = zip(*(result[key] for result in results))
        merged[key] = [[copies[0][0]] + [statistics.median(cells) for cells in
                                        zip(*(row[1:] for row in copies))] for copies in rows]
    return merged


WORKERS = {"convtrain": convtrain_worker, "torch": torch_worker, "ceiling": ceiling_worker}


def run_worker(kind, mode, batch, threads):
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--mode", mode,
               "--batch", str(batch), "--threads", str(threads)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)) if kind == "ceiling" else None
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--mode", default="train")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if args.worker:
        result = WORKERS[args.worker](args.mode, args.batch, args.threads)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    flags = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    print(f"LeNet-5, float32, {args.threads} threads, {args.rounds} alternating rounds; "
          f"OpenBLAS tuning variables set: {', '.join(flags) or 'none'}")
    print(f"\n{'batch':>6}{'convtrain img/s':>17}{'PyTorch img/s':>15}{'ratio':>8}"
          f"{'convtrain RSS MB':>18}{'PyTorch RSS MB':>16}")
    for batch in BATCHES:
        runs = {"convtrain": [], "torch": []}
        for _ in range(args.rounds):
            for kind in runs:
                runs[kind].append(run_worker(kind, "train", batch, args.threads))
        ours = statistics.median(r["images_per_s"] for r in runs["convtrain"])
        theirs = statistics.median(r["images_per_s"] for r in runs["torch"])
        rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
        print(f"{batch:>6}{ours:>17,.0f}{theirs:>15,.0f}{ours / theirs:>8.2f}"
              f"{rss['convtrain']:>18.0f}{rss['torch']:>16.0f}")

    tables = {"convtrain": [], "torch": []}
    for _ in range(args.rounds):
        for kind in tables:
            tables[kind].append(run_worker(kind, "layers", 64, args.threads))
    ours, theirs = _median_tables(tables["convtrain"]), _median_tables(tables["torch"])
    ceiling = run_worker("ceiling", "", 0, args.threads)["gflops"]
    print(f"\nper layer, batch 64, ms (median of {args.rounds} workers' medians)"
          f"\n{'':<12}{'convtrain':>24}{'PyTorch':>24}")
    print(f"{'layer':<12}{'forward':>14}{'backward':>10}{'forward':>14}{'backward':>10}")
    for (name, f1, b1), (_, f2, b2) in zip(ours["layers"], theirs["layers"]):
        print(f"{name:<12}{f1:>14.3f}{b1:>10.3f}{f2:>14.3f}{b2:>10.3f}")

    print(f"\nconv kernels, batch 64: ms and GFLOP/s (float32 matmul ceiling here: "
          f"{ceiling:.0f} GFLOP/s)")
    print(f"{'layer':<8}{'kernel':<16}{'convtrain ms':>13}{'GFLOP/s':>9}{'PyTorch ms':>12}"
          f"{'GFLOP/s':>9}{'ratio':>7}")
    for mine, rival in zip(ours["kernels"], theirs["kernels"]):
        name, flops = mine[0], mine[1]
        for label, ms, rival_ms in zip(("forward", "weight grad", "input grad"), mine[2:],
                                       rival[1:]):
            print(f"{name:<8}{label:<16}{ms:>13.3f}{flops / ms / 1e6:>9.1f}{rival_ms:>12.3f}"
                  f"{flops / rival_ms / 1e6:>9.1f}{ms / rival_ms:>7.1f}")


if __name__ == "__main__":
    main()
