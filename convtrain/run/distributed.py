"""Training on K processes started by an MPI launcher (mpiexec, mpirun, srun): mpi4py's side
of convtrain.team, and how the processes agree on starting, stopping and failing.

Nothing here imports mpi4py unless a launcher started this process: an ordinary run never
loads or initialises MPI. What the processes must agree on, and how:

- every sum over the batch: team.chain and team.gather_rows (see convtrain.team);
- input every process reads (data, a checkpoint): all_succeed, so that a file only some
  processes can read ends all of them with one line from rank 0;
- what rank 0 alone does (the run folder, checkpoints): root_does, so that a failed write
  ends all of them;
- stopping after a step (Ctrl-C on any): any;
- anything else that fails on one process alone: abort, which ends the whole job, so that
  no process waits forever for one that has gone.
"""

import os
import socket
import time

import numpy as np

from convtrain.errors import EndedElsewhere, UserError, everywhere
from convtrain.extras import pip_install
from convtrain.run.launch import launched_rank, launched_size
from convtrain.team import Solo

_joined = None  # the MpiTeam of this process, once join() has made one


def join():
    """This process's team: Solo when no launcher started it, or started it alone, else an
    MpiTeam of all the launched processes (MPI initialised here)."""
    global _joined
    if _joined is not None:
        return _joined
    if launched_rank() is None or launched_size() == 1:
        return Solo()
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError(f"started by an MPI launcher as one of {launched_size() or 'several'} "
                        f"processes, but mpi4py is not installed: {pip_install('mpi')} "
                        f"(or run without mpiexec)") from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return Solo()
    _joined = MpiTeam(MPI.COMM_WORLD)
    return _joined


def joined():
    """The MpiTeam of this process, or None (no MPI initialised)."""
    return _joined


class MpiSums:
    """The layers' side of K processes, each computing a contiguous share of every batch:
    the sums over it (convtrain.team)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.is_root = self.rank == 0
        self.comm_seconds = 0.0  # communicating, and waiting for the process before
        self.comm_bytes = 0  # received from the others, in the sums over batches
        self.bounds = None  # the current batch's shares: rank r's rows bounds[r]:bounds[r+1]

    def own_rows(self, batch):
        self.bounds = [len(batch) * rank // self.size for rank in range(self.size + 1)]
        return batch[self.own_slice()]

    def whole(self, rows):
        return self.bounds[-1]

    def own_slice(self):
        return slice(self.bounds[self.rank], self.bounds[self.rank + 1])

    def chain(self, total, add):
        """Rank r takes the running total from rank r - 1, adds its samples, hands it to
        r + 1; the last rank's total goes to all."""
        started = time.perf_counter()
        if self.rank > 0:
            self.comm.Recv(total, source=self.rank - 1)
        received = time.perf_counter()
        add(total)
        added = time.perf_counter()
        if self.rank < self.size - 1:
            self.comm.Send(total, dest=self.rank + 1)
        self.comm.Bcast(total, root=self.size - 1)
        self.comm_seconds += (received - started) + (time.perf_counter() - added)
        # A total from the rank before, and the last rank's (broadcast) unless it is this.
        self.comm_bytes += total.nbytes * ((self.rank > 0) + (self.rank < self.size - 1))
        return total

    def gather_rows(self, rows):
        started = time.perf_counter()
        rows = np.ascontiguousarray(rows)
        whole = np.empty((self.bounds[-1],) + rows.shape[1:], dtype=rows.dtype)
        per_row = int(np.prod(rows.shape[1:], dtype=np.int64))
        counts = [(high - low) * per_row for low, high in zip(self.bounds, self.bounds[1:])]
        self.comm.Allgatherv(rows, [whole, counts])
        self.comm_seconds += time.perf_counter() - started
        self.comm_bytes += whole.nbytes - rows.nbytes
        return whole


class MpiTeam(MpiSums):
    """K processes training together: the sums over each batch (MpiSums), and agreeing on
    input, failures and stopping (the trainer's side)."""

    def any(self, flag):
        """Whether flag is true on any process (Ctrl-C reaches them at different times)."""
        started = time.perf_counter()
        result = bool(self.comm.allreduce(int(bool(flag)), op=self.MPI.MAX))
        self.comm_seconds += time.perf_counter() - started
        return result

    def all_succeed(self, action):
        """action() on every process; returns its result. Where it raised a UserError on
        any process, rank 0 raises the first (naming the process when it was another's)
        and every other process EndedElsewhere: each process ends, one line is printed."""
        failure = None
        try:
            result = action()
        except UserError as exc:
            failure, result = exc, None
        lines = self.comm.allgather(None if failure is None else
                                    (failure.one_line(), failure.exit_code,
                                     socket.gethostname()))
        failed = [(rank, line) for rank, line in enumerate(lines) if line]
        if not failed:
            return result
        rank, (line, code, host) = failed[0]
        if not self.is_root:
            raise EndedElsewhere(code)
        if rank == 0:
            raise everywhere(failure)
        others = ("processes " + ", ".join(str(r) for r, _ in failed) if len(failed) > 1
                  else f"process {rank}")
        fine = self.size - len(failed)
        raise everywhere(UserError(f"{line.removeprefix('error: ')} (on {others} of {self.size}, "
                                   f"on {host}; {fine} other{'s' if fine > 1 else ''} "
                                   f"could read it)"))

    def root_does(self, action):
        """action() on rank 0 alone; returns its result there (None elsewhere). If it
        raised, rank 0 raises it and the others EndedElsewhere with its exit code."""
        failure, result = None, None
        if self.is_root:
            try:
                result = action()
            except Exception as exc:  # noqa: BLE001 - handed to the others, then raised
                failure = exc
        code = self.comm.bcast(None if failure is None else getattr(failure, "exit_code", 1))
        if code is None:
            return result
        if self.is_root:
            raise everywhere(failure)
        raise EndedElsewhere(code)

    def root_first(self, action):
        """action() on rank 0, then on the others (compiling kernels into a shared cache
        once, then loading them)."""
        if self.is_root:
            result = action()
        self.comm.Barrier()
        if not self.is_root:
            result = action()
        self.comm.Barrier()  # all ready: the first step's clock starts together
        return result

    def allgather(self, value):
        """[each process's value], in rank order (small Python values)."""
        started = time.perf_counter()
        values = self.comm.allgather(value)
        self.comm_seconds += time.perf_counter() - started
        return values

    def cores_per_process(self):
        """The cores this process has to itself, a fraction where processes outnumber
        cores: each core it may run on, shared with the other processes on this machine
        that may run on it too (a launcher that binds each process to its cores shares
        none; an unbound launch shares all)."""
        mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if not mine:
            return None
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        everyones = local.allgather(sorted(mine))
        local.Free()
        return sum(1.0 / sum(core in cores for cores in everyones) for core in mine)

    def plain_allreduce_ms(self, count, repeats=20):
        """Median milliseconds of MPI_Allreduce summing `count` float32 values: what a
        step's gradients would cost to exchange with a sum whose order depends on K (the
        comparison `convtrain time` prints)."""
        values, total, times = np.ones(count, np.float32), np.empty(count, np.float32), []
        for _ in range(repeats):
            self.comm.Barrier()
            started = time.perf_counter()
            self.comm.Allreduce(values, total)
            times.append(time.perf_counter() - started)
        return 1e3 * float(np.median(times))

    def abort(self, code):
        """End every process of the job now, with exit code `code`."""
        self.comm.Abort(code)
