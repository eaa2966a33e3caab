"""`convtrain time`: per-layer forward/backward milliseconds, like `caffe time`.

Inputs are random (seeded) batches of the configured shape: timing needs no data.
The first pass runs every kernel once so that JIT compilation is reported apart.
"""

import time

import numpy as np

from convtrain.run.compiling import ready_kernels
from convtrain.layers import walk_with_depth
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer
from convtrain.team import Solo


def time_network(config, batch, iters, team=None):
    """Per-layer and whole-step times of `iters` training steps on batches of `batch`
    random images. team: the processes sharing each batch (convtrain.team), whose
    communication is timed too; the times are this process's."""
    team = team or Solo()
    rng = np.random.default_rng(config.seed)
    network = Network(config)
    network.mode.team = team
    optimizer = Optimizer(config.optimizer, network)
    x = rng.standard_normal((batch,) + tuple(config.input)).astype(network.dtype)
    labels = rng.integers(0, config.num_outputs, size=batch)
    compile_s, kernels = team.root_first(lambda: ready_kernels(network, optimizer, x, labels))
    network.mode.keep_deltas = False  # as in a training step that is not logged
    layers = network.all_layers()
    passes = []  # per iteration, {layer name: {"forward_ms", "backward_ms"}}
    steps, comm, comm_bytes = [], [], []
    for _ in range(iters):
        network.timings = {}
        network.loss_and_gradients(x, labels, input_grad=False)
        passes.append(network.timings)
        network.timings = None
        seconds, received = team.comm_seconds, team.comm_bytes
        started = time.perf_counter()
        network.loss_and_gradients(x, labels, input_grad=False)
        optimizer.step(config.optimizer.lr)
        steps.append(time.perf_counter() - started)
        comm.append(team.comm_seconds - seconds)
        comm_bytes.append(team.comm_bytes - received)
    parameters = sum(layer.params[key].size for layer, key in network.parameters())
    allreduce_ms = team.plain_allreduce_ms(parameters) if team.size > 1 else 0.0
    depth = {spec.name: level for spec, level in walk_with_depth(config.layers)}
    # A residual block's own row includes its layers' time; the totals count each once.
    rows = [{"name": layer.name, "type": layer.spec.type, "depth": depth[layer.name],
             "forward_ms": float(np.median([p[layer.name]["forward_ms"] for p in passes])),
             "backward_ms": float(np.median([p[layer.name]["backward_ms"] for p in passes])),
             **_algorithms(layer)}
            for layer in layers]
    top = [row for row in rows if row["depth"] == 0]
    step_ms = 1e3 * float(np.median(steps))
    import numba  # loaded by the kernels already; asked only after they have run

    return {"batch": batch, "iters": iters, "compile_s": compile_s, "kernels": kernels,
            "threads": numba.get_num_threads(), "threading_layer": numba.threading_layer(),
            "processes": team.size,
            "layers": rows,
            "forward_ms": sum(r["forward_ms"] for r in top),
            "backward_ms": sum(r["backward_ms"] for r in top),
            "step_ms": step_ms, "images_per_s": batch / (step_ms / 1e3),
            # Rank 0's: waiting for the process before it in a chain counts here too.
            "comm_ms": 1e3 * float(np.median(comm)),
            "comm_bytes_per_step": int(np.median(comm_bytes)),
            "parameters": int(parameters), "plain_allreduce_ms": allreduce_ms}


def _algorithms(layer):
    """A conv layer's algorithms (conv2d's key `algorithm`) as a row's fields; {} for others."""
    if not hasattr(layer, "weight_algorithm"):
        return {}
    return {"algorithms": {"forward": layer.algorithm, "delta": layer.algorithm,
                           "kernel_gradient": layer.weight_algorithm}}


def timing_text(result, iters):
    """The table `convtrain time` prints of a time_network result (api.time_network's:
    with .spec and .team)."""
    from convtrain.run.report import WINOGRAD_LEGEND, type_and_algorithm

    spec, team = result.spec, result.team
    processes = (f" per process, {team.size} processes of {result['batch'] // team.size} "
                 f"samples each (times are rank 0's)" if team.size > 1 else "")
    threads_word = "thread" if result["threads"] == 1 else "threads"
    lines = [f"{spec.name}: batch {result['batch']}, {spec.dtype}, {result['threads']} "
             f"{threads_word} ({result['threading_layer']}){processes}, median of {iters} "
             f"iterations; {result['kernels']}, not counted"]
    labels = ["  " * row["depth"] + row["name"] for row in result["layers"]]
    types = [type_and_algorithm(row["type"], row.get("algorithms", {}).get("forward"),
                                row.get("algorithms", {}).get("kernel_gradient"))
             for row in result["layers"]]
    name_w = max([12] + [len(label) + 2 for label in labels])
    type_w = max([12] + [len(kind) + 2 for kind in types])
    lines.append(f"{'layer':<{name_w}}{'type':<{type_w}}{'forward ms':>12}{'backward ms':>13}")
    for label, kind, row in zip(labels, types, result["layers"]):
        lines.append(f"{label:<{name_w}}{kind:<{type_w}}{row['forward_ms']:>12.3f}"
                     f"{row['backward_ms']:>13.3f}")
    lines.append(f"{'total':<{name_w + type_w}}{result['forward_ms']:>12.3f}"
                 f"{result['backward_ms']:>13.3f}")
    if any(kind != row["type"] for kind, row in zip(types, result["layers"])):
        lines.append(WINOGRAD_LEGEND)
    lines.append(f"training step (forward, loss, backward, update): {result['step_ms']:.3f} ms "
                 f"= {result['images_per_s']:.0f} images/s")
    if team.size > 1:
        lines.append(f"of which communication (and waiting for the process before in each "
                     f"sum): {result['comm_ms']:.3f} ms ({result['comm_ms'] / result['step_ms']:.0%}), "
                     f"{result['comm_bytes_per_step']:,} bytes received by rank 0; a plain "
                     f"MPI allreduce of the {result['parameters']:,} gradients (whose sum "
                     f"would depend on the number of processes): "
                     f"{result['plain_allreduce_ms']:.3f} ms")
    return "\n".join(lines)
