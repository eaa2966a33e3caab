"""`convtrain time`: per-layer forward/backward milliseconds, like `caffe time`.

Inputs are random (seeded) batches of the configured shape: timing needs no data.
The first pass runs every kernel once so that JIT compilation is reported apart.
"""

import time

import numpy as np

from convtrain.compiling import ready_kernels
from convtrain.network import Network
from convtrain.optim import Optimizer


def time_network(config, batch, iters):
    rng = np.random.default_rng(config.seed)
    network = Network(config)
    optimizer = Optimizer(config.optimizer, network)
    x = rng.standard_normal((batch,) + tuple(config.input)).astype(network.dtype)
    labels = rng.integers(0, config.num_outputs, size=batch)
    compile_s, kernels = ready_kernels(network, optimizer, x, labels)
    forward = {layer.name: [] for layer in network.layers}
    backward = {layer.name: [] for layer in network.layers}
    steps = []
    for _ in range(iters):
        out = x
        for layer in network.layers:
            started = time.perf_counter()
            out = layer.forward(out)
            forward[layer.name].append(time.perf_counter() - started)
        _, dscores, _ = network.loss_fn(out.reshape(batch, -1), labels)
        delta = dscores.astype(network.dtype)
        for layer in reversed(network.layers):
            delta = delta.reshape((batch,) + layer.spec.out_shape)
            started = time.perf_counter()
            delta = layer.backward(delta, layer is not network.layers[0])
            backward[layer.name].append(time.perf_counter() - started)
        started = time.perf_counter()
        network.loss_and_gradients(x, labels, input_grad=False)
        optimizer.step(config.optimizer.lr)
        steps.append(time.perf_counter() - started)
    rows = [{"name": layer.name, "type": layer.spec.type,
             "forward_ms": 1e3 * float(np.median(forward[layer.name])),
             "backward_ms": 1e3 * float(np.median(backward[layer.name]))}
            for layer in network.layers]
    step_ms = 1e3 * float(np.median(steps))
    import numba  # loaded by the kernels already; asked only after they have run

    return {"batch": batch, "iters": iters, "compile_s": compile_s, "kernels": kernels,
            "threads": numba.get_num_threads(), "threading_layer": numba.threading_layer(),
            "layers": rows,
            "forward_ms": sum(r["forward_ms"] for r in rows),
            "backward_ms": sum(r["backward_ms"] for r in rows),
            "step_ms": step_ms, "images_per_s": batch / (step_ms / 1e3)}
