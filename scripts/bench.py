"""convtrain against PyTorch on LeNet-5, a plain CIFAR CNN or ResNet-20, side by side, in one run.

    pip install torch==2.13.0          # the CPU wheel; or: pip install -e '.[bench]'
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py [--threads 2]
        [--network lenet5|cifar-plain|resnet20|mobilenetv2] [--training-only]
    python scripts/bench.py --processes 2 [--network lenet5|resnet20]    # needs [mpi]

convtrain and PyTorch run in separate worker processes (PyTorch's OpenMP runtime slows
other packages in the same process), after warm-up calls; JIT compilation happens in the
warm-up and is never timed. Everything is timed *paired*: the two workers stay up and take
turns running short chunks of calls, so that both sides see the same moments of a shared
machine, whose speed drifts by 1.5x over seconds (the idle side gets GAP_S to let its
spinning threads sleep before the other starts). Printed: training images/s of both at
batch 32, 64 and 256 and the median of the paired chunks' ratios, with each training
worker's peak RSS; each conv kernel's ms and GFLOP/s at batch 64 beside NumPy's float32
matmul (the practical ceiling), with the median paired ratio; and per-layer forward and
backward ms at batch 64, each layer run on its own input, the same way on both sides.

Both train configs/lenet5-mnist.yaml's network (conv 6@5x5 pad 2, relu, maxpool,
conv 16@5x5, relu, maxpool, dense 120-84-10) on random 28x28 images, or ResNet-20 (He et
al. 2016's CIFAR network: a 3x3 stem of 16 filters with batchnorm, three stages of three
residual blocks of 16, 32 and 64 filters, each two 3x3 convs with batchnorm, 1x1
projection shortcuts where the shape changes, global average pooling, dense 10) on random
3x32x32 images, with SGD (lr 0.05, momentum 0.9, weight decay 5e-4) and softmax
cross-entropy, in float32. For ResNet-20: batch 64 and 128, no per-kernel table (57 conv
kernels), and the per-layer table lists the top-level layers (a block's row is its whole
body and shortcut). CIFAR-plain is a compute-bound network of 3x32x32 inputs: four 3x3 convs
(32, 32, 64, 64 filters, padding 1) with ReLUs, a 2x2 max-pool after each pair, dense 256
and 10; batch 64 and 256, with the per-kernel table. MobileNetV2 is
configs/mobilenetv2-cifar10.yaml's network (depthwise convolutions, relu6, inverted-residual
blocks) and PyTorch's the same layers translated from that config (scripts/torch_nets.py);
batch 64 and 128, top-level layers in the per-layer table, no per-kernel table.

--processes K compares convtrain with itself instead: one process of K threads against K
processes of one thread (`mpiexec -n K`), each `convtrain time` on the repository's config
(configs/lenet5-mnist.yaml at batch 64, configs/resnet20-cifar10.yaml at 128), taking turns
for ROUNDS rounds; it prints the median images/s of each, their ratio, and rank 0's
communication per step: milliseconds (waiting for the process before it in each sum
included), share of the step, and bytes received.
"""

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "lenet5-mnist.yaml")
NETWORK_BATCHES = {"lenet5": (32, 64, 256), "cifar-plain": (64, 256), "resnet20": (64, 128),
                   "mobilenetv2": (64, 128)}
MOBILENETV2 = os.path.join(HERE, "..", "configs", "mobilenetv2-cifar10.yaml")
WARMUP_CALLS = 3
CHUNK_S = 0.15      # a chunk of calls runs about this long...
CHUNKS = 20         # ...and each side runs this many chunks per measurement
GAP_S = 0.03        # idle time before each chunk: OpenMP threads spin a while after work
LAYER_CHUNKS = 8    # the per-layer table: 24 callables a side, so fewer, shorter chunks
LAYER_CHUNK_S = 0.05


def synthetic(batch, shape, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + tuple(shape), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    return x, y


def resnet20_blocks():
    """[(block name, input channels, filters, stride)] of ResNet-20's nine blocks."""
    blocks, channels = [], 16
    for stage, filters in enumerate((16, 32, 64)):
        for index in range(3):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append((f"block{len(blocks) + 1}", channels, filters, stride))
            channels = filters
    return blocks


def resnet20_yaml():
    """ResNet-20 as a convtrain config; its layer names are the PyTorch model's."""
    lines = ["name: resnet20", "input: [3, 32, 32]", "layers:",
             "  - {type: conv2d, name: stem, filters: 16, kernel: 3, padding: 1, bias: false}",
             "  - {type: batchnorm, name: stem_bn}", "  - {type: relu, name: stem_relu}"]
    for name, channels, filters, stride in resnet20_blocks():
        body = (f"[{{type: conv2d, name: c1, filters: {filters}, kernel: 3, stride: {stride}, "
                f"padding: 1, bias: false}}, {{type: batchnorm, name: bn1}}, {{type: relu, "
                f"name: relu1}}, {{type: conv2d, name: c2, filters: {filters}, kernel: 3, "
                f"padding: 1, bias: false}}, {{type: batchnorm, name: bn2}}]")
        shortcut = ""
        if stride != 1 or channels != filters:
            shortcut = (f", shortcut: [{{type: conv2d, name: proj, filters: {filters}, "
                        f"kernel: 1, stride: {stride}, bias: false}}, {{type: batchnorm, "
                        f"name: proj_bn}}]")
        lines += [f"  - {{type: residual, name: {name}, body: {body}{shortcut}}}",
                  f"  - {{type: relu, name: {name}_relu}}"]
    lines += ["  - {type: globalavgpool, name: pool}", "  - {type: dense, name: fc, units: 10}",
              "optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}"]
    return "\n".join(lines) + "\n"


CIFAR_PLAIN_YAML = """\
name: cifar-plain
input: [3, 32, 32]
layers:
  - {type: conv2d, name: conv1, filters: 32, kernel: 3, padding: 1}
  - {type: relu, name: relu1}
  - {type: conv2d, name: conv2, filters: 32, kernel: 3, padding: 1}
  - {type: relu, name: relu2}
  - {type: maxpool, name: pool1, size: 2}
  - {type: conv2d, name: conv3, filters: 64, kernel: 3, padding: 1}
  - {type: relu, name: relu3}
  - {type: conv2d, name: conv4, filters: 64, kernel: 3, padding: 1}
  - {type: relu, name: relu4}
  - {type: maxpool, name: pool2, size: 2}
  - {type: flatten, name: flatten}
  - {type: dense, name: fc1, units: 256}
  - {type: relu, name: relu5}
  - {type: dense, name: fc2, units: 10}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}
"""


def convtrain_config(network):
    from convtrain.spec.config import load_config

    if network == "resnet20":
        return load_config("resnet20.yaml", text=resnet20_yaml())
    if network == "cifar-plain":
        return load_config("cifar-plain.yaml", text=CIFAR_PLAIN_YAML)
    if network == "mobilenetv2":
        return load_config(MOBILENETV2)
    return load_config(CONFIG)


def median_ms(function, repeats):
    """Median ms of `repeats` calls after one untimed call."""
    function()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        function()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# ---------------------------------------------------------------- convtrain worker

def convtrain_worker(mode, batch, threads, network_name):
    from convtrain.runtime import prepare_numba

    prepare_numba(threads)
    from convtrain.model.network import Network
    from convtrain.model.optim import Optimizer

    config = convtrain_config(network_name)
    network = Network(config)
    network.mode.training = True  # the layer table runs layers alone: batch statistics
    optimizer = Optimizer(config.optimizer, network)
    x, y = synthetic(batch, config.input)

    def step():
        network.loss_and_gradients(x, y, input_grad=False)
        optimizer.step(config.optimizer.lr)

    if mode == "train":
        return {"step": step}
    if mode == "kernels":
        return _convtrain_kernels(network, x)
    if mode == "layers":
        return _convtrain_layers(network, x)
    raise ValueError(mode)


def _convtrain_layers(network, x):
    """Each layer's forward, and forward + backward, on that layer's real input, as
    callables named "LAYER forward" and "LAYER forward+backward". The first layer's
    backward computes parameter gradients only, as in training."""
    import numpy as np

    layers = {}
    out = x
    for index, layer in enumerate(network.layers):
        def forward(layer=layer, inp=out):
            return layer.forward(inp)

        def forward_backward(layer=layer, inp=out, need_dx=index > 0):
            layer.backward(np.ones_like(layer.forward(inp)), need_dx)

        layers[f"{layer.name} forward"] = forward
        layers[f"{layer.name} forward+backward"] = forward_backward
        out = layer.forward(out)
    return layers


def _convtrain_kernels(network, x):
    """Each conv layer's three kernels on that layer's real input, as callables named
    "LAYER KERNEL", each with the layer's FLOPs as `flops` and its `algorithm`. The first
    layer's input grad gets `in_training` False: a training step never computes the
    gradient of the images (`Network.backward`)."""
    kernels = {}
    out = x
    for layer in network.layers:
        if layer.spec.type == "conv2d":
            kernels.update(_one_layers_kernels(layer, out))
            if layer is network.layers[0]:
                kernels[f"{layer.name} input grad"].in_training = False
        out = layer.forward(out)
    return kernels


def _one_layers_kernels(layer, x):
    """The layer's forward, kernel-gradient and input-gradient kernels, each by the
    algorithm the layer chose (`Conv2dSpec.algorithms`)."""
    import numpy as np

    from convtrain.kernels.conv import conv2d_backward_input, conv2d_forward
    from convtrain.kernels.winograd import winograd_forward
    from convtrain.layers.conv2d import _winograd_kernels

    w = layer.correlation_kernel()
    b = layer.params["bias"]
    sh, sw = layer.spec.stride
    y = np.empty((len(x),) + layer.spec.out_shape, dtype=np.float32)
    dout = np.ones_like(y)
    dx = np.empty_like(x)
    top, _, left, _ = layer.spec.padding
    padded = layer.padded_size()
    filters, channels, kh, kw = w.shape
    w_back = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    no_bias = np.zeros(channels, dtype=np.float32)

    def weight_grad():
        """The layer's kernel gradient, as training computes it: each sample's share, then
        their sum in order (and for Winograd, G^T . G of the sum)."""
        layer.kernel_gradient_sum(x, dout)

    gemm = {"forward": lambda: conv2d_forward(x, w, b, sh, sw, top, left, *padded, y),
            "weight grad": weight_grad,
            "input grad": lambda: conv2d_backward_input(dout, w, sh, sw, top, left, *padded, dx)}
    winograd = {"forward": lambda: winograd_forward(x, _winograd_kernels(w), b, top, left, y),
                "weight grad": weight_grad,
                "input grad": lambda: winograd_forward(dout, _winograd_kernels(w_back), no_bias,
                                                       2 - top, 2 - left, dx)}
    chosen = {"forward": layer.algorithm, "weight grad": layer.weight_algorithm,
              "input grad": layer.algorithm}
    kernels = {}
    for name, algorithm in chosen.items():
        kernel = (winograd if algorithm == "winograd" else gemm)[name]
        kernel.flops = layer.spec.flops() * len(x)
        kernel.algorithm = algorithm
        kernels[f"{layer.name} {name}"] = kernel
    return kernels


def ceiling_worker(mode, batch, threads, network_name, n=2048):
    """NumPy's float32 matmul at n=2048 with `threads` BLAS threads: the practical ceiling.
    Its own process, because convtrain pins BLAS to one thread per Numba thread."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    ms = median_ms(lambda: a @ a, repeats=5)
    return {"gflops": 2 * n ** 3 / (ms / 1e3) / 1e9}


def serve(callables):
    """A worker's loop: each line "CALLS NAME" on stdin runs callables[NAME] CALLS times
    and answers one JSON line, the seconds of each call. End of input ends it."""
    for function in callables.values():
        for _ in range(WARMUP_CALLS):
            function()
    print(json.dumps({"ready": {name: getattr(function, "flops", 0)
                                for name, function in callables.items()},
                      "algorithms": {name: getattr(function, "algorithm", "")
                                     for name, function in callables.items()},
                      "in_training": {name: getattr(function, "in_training", True)
                                      for name, function in callables.items()}}), flush=True)
    for line in sys.stdin:
        calls, name = line.rstrip("\n").split(" ", 1)
        function, times = callables[name], []
        for _ in range(int(calls)):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        print(json.dumps(times), flush=True)


# ---------------------------------------------------------------- PyTorch worker

def torch_worker(mode, batch, threads, network_name):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if network_name == "resnet20":
        layers, shape = _torch_resnet20(), (3, 32, 32)
    elif network_name == "mobilenetv2":
        from torch_nets import torch_layers  # beside this script

        config = convtrain_config(network_name)
        layers, shape = torch_layers(config), tuple(config.input)
    elif network_name == "cifar-plain":
        layers = [("conv1", nn.Conv2d(3, 32, 3, padding=1)), ("relu1", nn.ReLU()),
                  ("conv2", nn.Conv2d(32, 32, 3, padding=1)), ("relu2", nn.ReLU()),
                  ("pool1", nn.MaxPool2d(2)), ("conv3", nn.Conv2d(32, 64, 3, padding=1)),
                  ("relu3", nn.ReLU()), ("conv4", nn.Conv2d(64, 64, 3, padding=1)),
                  ("relu4", nn.ReLU()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                  ("fc1", nn.Linear(4096, 256)), ("relu5", nn.ReLU()), ("fc2", nn.Linear(256, 10))]
        shape = (3, 32, 32)
    else:
        layers = [("conv1", nn.Conv2d(1, 6, 5, padding=2)), ("relu2", nn.ReLU()),
                  ("maxpool3", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(6, 16, 5)),
                  ("relu5", nn.ReLU()), ("maxpool6", nn.MaxPool2d(2)), ("flatten7", nn.Flatten()),
                  ("fc1", nn.Linear(400, 120)), ("relu9", nn.ReLU()), ("fc2", nn.Linear(120, 84)),
                  ("relu11", nn.ReLU()), ("fc3", nn.Linear(84, 10))]
        shape = (1, 28, 28)
    model = nn.Sequential(*[module for _, module in layers])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = synthetic(batch, shape)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    if mode == "train":
        return {"step": step}
    if mode == "kernels":
        return _torch_kernels(layers, x)
    if mode == "layers":
        return _torch_layers(layers, x)
    raise ValueError(mode)


def _torch_resnet20():
    """ResNet-20 as [(name, module)], the same layers and names as resnet20_yaml()."""
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)

    layers = [("stem", nn.Conv2d(3, 16, 3, padding=1, bias=False)),
              ("stem_bn", nn.BatchNorm2d(16)), ("stem_relu", nn.ReLU())]
    for name, channels, filters, stride in resnet20_blocks():
        body = nn.Sequential(nn.Conv2d(channels, filters, 3, stride, 1, bias=False),
                             nn.BatchNorm2d(filters), nn.ReLU(),
                             nn.Conv2d(filters, filters, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(filters))
        shortcut = None
        if stride != 1 or channels != filters:
            shortcut = nn.Sequential(nn.Conv2d(channels, filters, 1, stride, bias=False),
                                     nn.BatchNorm2d(filters))
        layers += [(name, Residual(body, shortcut)), (f"{name}_relu", nn.ReLU())]
    return layers + [("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
                     ("fc", nn.Linear(64, 10))]


def _torch_layers(layers, x):
    """The same callables as _convtrain_layers, each layer run on its own cut of the graph."""
    import torch

    callables = {}
    out = x
    for index, (name, module) in enumerate(layers):
        leaf = out.detach().requires_grad_(index > 0)
        with torch.no_grad():
            grad = torch.ones_like(module(leaf))

        def forward(module=module, leaf=leaf):
            module(leaf)

        def forward_backward(module=module, leaf=leaf, grad=grad):
            leaf.grad = None
            result = module(leaf)
            if result.requires_grad:  # a parameterless first layer has nothing to do
                torch.autograd.backward(result, grad)

        callables[f"{name} forward"] = forward
        callables[f"{name} forward+backward"] = forward_backward
        with torch.no_grad():
            out = module(out)
    return callables


def _torch_kernels(layers, x):
    """The same ops as _convtrain_kernels, named the same."""
    import torch

    kernels = {}
    out = x
    for name, module in layers:
        if isinstance(module, torch.nn.Conv2d):
            kernels.update(_one_torch_layers_kernels(name, module, out))
        with torch.no_grad():
            out = module(out)
    return kernels


def _one_torch_layers_kernels(name, module, x):
    import torch
    import torch.nn.functional as F
    from torch.nn.grad import conv2d_input, conv2d_weight

    w, b, pad = module.weight.detach(), module.bias.detach(), module.padding
    dout = torch.ones_like(F.conv2d(x, w, b, padding=pad))
    return {f"{name} forward": lambda: F.conv2d(x, w, b, padding=pad),
            f"{name} weight grad": lambda: conv2d_weight(x, w.shape, dout, padding=pad),
            f"{name} input grad": lambda: conv2d_input(x.shape, w, dout, padding=pad)}


# ---------------------------------------------------------------- orchestration

WORKERS = {"convtrain": convtrain_worker, "torch": torch_worker, "ceiling": ceiling_worker}


def _command(kind, mode, batch, threads, network):
    return [sys.executable, os.path.abspath(__file__), "--worker", kind, "--mode", mode,
            "--batch", str(batch), "--threads", str(threads), "--network", network]


def run_worker(kind, mode, batch, threads, network):
    """Runs a one-shot worker to the end; returns its JSON answer."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)) if kind == "ceiling" else None
    proc = subprocess.run(_command(kind, mode, batch, threads, network), capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Server:
    """A serving worker (see serve()): `.callables` maps the names of its callables to
    their FLOPs (0 where none are counted), `.algorithms` to their algorithm ('' where
    none is named), `.in_training` to whether a training step runs them."""

    def __init__(self, kind, mode, batch, threads, network):
        self.kind = kind
        self.proc = subprocess.Popen(_command(kind, mode, batch, threads, network), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = self._answer()
        self.callables, self.algorithms = ready["ready"], ready["algorithms"]
        self.in_training = ready["in_training"]

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"{self.kind} worker failed (its error is above)")
        return json.loads(line)

    def times(self, name, calls):
        self.proc.stdin.write(f"{calls} {name}\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        """Ends the worker; returns its peak RSS in MB."""
        self.proc.stdin.close()
        answer = self._answer()
        self.proc.wait()
        return answer["peak_rss_mb"]


def paired(servers, names, chunks=CHUNKS, chunk_s=CHUNK_S):
    """Times the callables `names` on both servers in `chunks` rounds: in each round, for
    each name, each server runs one chunk of about `chunk_s` seconds, the servers taking
    turns (the order flips every round). Returns {name: ({kind: median seconds per
    call}, median of the chunks' time ratios, first server over second)}."""
    calls = {(s.kind, name): max(3, round(chunk_s / statistics.median(s.times(name, 3))))
             for s in servers for name in names}
    times = {key: [] for key in calls}
    ratios = {name: [] for name in names}
    for chunk in range(chunks):
        for name in names:
            medians = {}
            for server in servers if chunk % 2 == 0 else servers[::-1]:
                time.sleep(GAP_S)
                chunk_times = server.times(name, calls[server.kind, name])
                times[server.kind, name] += chunk_times
                medians[server.kind] = statistics.median(chunk_times)
            ratios[name].append(medians[servers[0].kind] / medians[servers[1].kind])
    return {name: ({s.kind: statistics.median(times[s.kind, name]) for s in servers},
                   statistics.median(ratios[name])) for name in names}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--mode", default="train")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--network", choices=sorted(NETWORK_BATCHES), default="lenet5")
    parser.add_argument("--processes", type=int,
                        help="compare K processes of 1 thread with 1 process of K threads")
    parser.add_argument("--training-only", action="store_true",
                        help="only the training table (repeated runs: a minute, not five)")
    args = parser.parse_args()
    if args.processes:
        _processes_table(args.network, args.processes)
        return
    if args.worker:
        result = WORKERS[args.worker](args.mode, args.batch, args.threads, args.network)
        if args.mode in ("train", "kernels", "layers"):
            serve(result)
            result = {}
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if importlib.util.find_spec("torch") is None:  # before a worker dies of it mid-table
        sys.exit("scripts/bench.py: PyTorch is not installed; it runs beside convtrain: "
                 "pip install torch==2.13.0 (the CPU wheel), or pip install -e '.[bench]'")

    flags = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    title = {"lenet5": "LeNet-5", "resnet20": "ResNet-20", "cifar-plain": "CIFAR-plain",
             "mobilenetv2": "MobileNetV2"}[args.network]
    print(f"{title}, float32, {args.threads} threads; OpenBLAS tuning variables set: "
          f"{', '.join(flags) or 'none'}")
    print(f"\ntraining, {CHUNKS} paired chunks of ~{CHUNK_S} s per side; ratio = median of "
          f"the chunks' ratios (> 1: convtrain faster)")
    print(f"{'batch':>6}{'convtrain img/s':>17}{'PyTorch img/s':>15}{'ratio':>8}"
          f"{'convtrain RSS MB':>18}{'PyTorch RSS MB':>16}")
    for batch in NETWORK_BATCHES[args.network]:
        servers = [Server(kind, "train", batch, args.threads, args.network)
                   for kind in ("convtrain", "torch")]
        seconds, time_ratio = paired(servers, ["step"])["step"]
        rss = {server.kind: server.close() for server in servers}
        print(f"{batch:>6}{batch / seconds['convtrain']:>17,.0f}"
              f"{batch / seconds['torch']:>15,.0f}{1 / time_ratio:>8.2f}"
              f"{rss['convtrain']:>18.0f}{rss['torch']:>16.0f}")

    if args.training_only:
        return
    if args.network not in ("resnet20", "mobilenetv2"):
        _kernel_table(args)
    _layer_table(args)


def _kernel_table(args):
    servers = [Server(kind, "kernels", 64, args.threads, args.network)
               for kind in ("convtrain", "torch")]
    kernel_rows = [(name, flops, servers[0].algorithms[name], servers[0].in_training[name])
                   + paired(servers, [name])[name]
                   for name, flops in servers[0].callables.items()]
    for server in servers:
        server.close()
    ceiling = run_worker("ceiling", "", 0, args.threads, args.network)["gflops"]
    print(f"\nconv kernels, batch 64: ms (median call) and GFLOP/s, {CHUNKS} paired chunks; "
          f"ratio = median of the chunks' time ratios\n(> 1: convtrain slower). float32 "
          f"matmul ceiling here: {ceiling:.0f} GFLOP/s")
    print("GFLOP/s are effective: the direct convolution's FLOPs over the time, so Winograd's "
          "can pass the ceiling.")
    print(f"{'layer':<8}{'kernel':<13}{'algorithm':<10}{'convtrain ms':>13}{'GFLOP/s':>9}"
          f"{'ceiling':>9}{'PyTorch ms':>12}{'GFLOP/s':>9}{'ratio':>7}")
    for name, flops, algorithm, in_training, seconds, ratio in kernel_rows:
        layer, kernel = name.split(" ", 1)
        ours, theirs = seconds["convtrain"], seconds["torch"]
        print(f"{layer:<8}{kernel:<13}{algorithm:<10}{ours * 1e3:>13.3f}"
              f"{flops / ours / 1e9:>9.1f}{flops / ours / 1e9 / ceiling:>8.0%} "
              f"{theirs * 1e3:>12.3f}{flops / theirs / 1e9:>9.1f}{ratio:>7.1f}"
              f"{'' if in_training else '  *'}")
    if not all(servers[0].in_training.values()):
        print("* not run in training: a step never needs the gradient of its input images")



def _layer_table(args):
    servers = [Server(kind, "layers", 64, args.threads, args.network)
               for kind in ("convtrain", "torch")]
    names = [name.rsplit(" ", 1)[0] for name in servers[0].callables if name.endswith(" forward")]
    timed = {}
    for name in names:  # forward and forward+backward interleaved, so they see the same moments
        both = paired(servers, [f"{name} forward", f"{name} forward+backward"], LAYER_CHUNKS,
                      LAYER_CHUNK_S)
        timed.update({key: seconds for key, (seconds, _) in both.items()})
    for server in servers:
        server.close()
    print(f"\nper layer, batch 64, ms (median call; {LAYER_CHUNKS} paired chunks of "
          f"~{LAYER_CHUNK_S} s per side and call; backward = forward+backward - forward)"
          f"\n{'':<12}{'convtrain':>24}{'PyTorch':>24}")
    print(f"{'layer':<12}{'forward':>14}{'backward':>10}{'forward':>14}{'backward':>10}")
    for name in names:
        cells = []
        for kind in ("convtrain", "torch"):
            forward = timed[f"{name} forward"][kind]
            both = timed[f"{name} forward+backward"][kind]
            cells.append(f"{forward * 1e3:>14.3f}{max(both - forward, 0.0) * 1e3:>10.3f}")
        print(f"{name:<12}{''.join(cells)}")


ROUNDS = 3
PROCESS_RUNS = {"lenet5": ("lenet5-mnist.yaml", 64, 200), "resnet20": ("resnet20-cifar10.yaml", 128, 8)}


def _time_json(config, batch, iters, threads, processes=None):
    command = [sys.executable, "-m", "convtrain", "time", config, "--batch", str(batch),
               "--iters", str(iters), "--threads", str(threads), "--format", "json"]
    if processes:
        command = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n",
                   str(processes)] + command
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def _processes_table(network, processes):
    name, batch, iters = PROCESS_RUNS[network]
    config = os.path.join(HERE, "..", "configs", name)
    print(f"{name}, batch {batch}: 1 process x {processes} threads against {processes} "
          f"processes x 1 thread, `convtrain time --iters {iters}`, {ROUNDS} rounds taking turns")
    alone, shared = [], []
    for _ in range(ROUNDS):
        alone.append(_time_json(config, batch, iters, processes))
        shared.append(_time_json(config, batch, iters, 1, processes))
    rate = {key: statistics.median(r["images_per_s"] for r in runs)
            for key, runs in (("alone", alone), ("shared", shared))}
    comm_ms = statistics.median(r["comm_ms"] for r in shared)
    step_ms = statistics.median(r["step_ms"] for r in shared)
    print(f"{'':<28}{'images/s':>10}{'step ms':>10}{'comm ms':>10}{'share':>8}{'bytes/step':>12}")
    print(f"{f'1 x {processes} threads':<28}{rate['alone']:>10,.0f}"
          f"{statistics.median(r['step_ms'] for r in alone):>10.1f}")
    print(f"{f'{processes} processes x 1 thread':<28}{rate['shared']:>10,.0f}{step_ms:>10.1f}"
          f"{comm_ms:>10.2f}{comm_ms / step_ms:>8.0%}{shared[0]['comm_bytes_per_step']:>12,}")
    print(f"ratio (processes / threads): {rate['shared'] / rate['alone']:.2f}")
    print(f"a plain MPI allreduce of the {shared[0]['parameters']:,} gradients instead: "
          f"{statistics.median(r['plain_allreduce_ms'] for r in shared):.3f} ms a step")


if __name__ == "__main__":
    main()
