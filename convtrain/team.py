"""The processes that share a training batch, as the layers see them.

A batch of B samples is split into K contiguous shares, one per process: rank r holds
samples B*r//K .. B*(r+1)//K - 1 (B/K each when K divides B; an epoch's last, smaller batch
may split unevenly). Whatever sums over the batch must come out bit-identical for
any K, so every such sum is one of two kinds:

- chain: a float64 running total in sample order. Rank 0 adds its samples, hands the total
  to rank 1, which carries on with its own, and so on; the last rank's total is everyone's.
  The additions are exactly those of one process adding up the whole batch.
- gather_rows: the rows themselves (scores, per-sample values), put together in sample
  order on every process, which then computes as one process would.

`Solo` is the one process of an ordinary run: its chain adds, its gather returns what it was
given, and it costs nothing. `convtrain.run.distributed.MpiTeam` is the same over MPI.
"""


class Solo:
    """One process computing the whole batch."""

    size = 1
    rank = 0
    is_root = True

    def __init__(self):
        self.comm_seconds = 0.0  # time spent communicating and waiting: none
        self.comm_bytes = 0

    def own_rows(self, batch):
        """This process's share of a whole batch (an array or sequence of B rows); the
        batch the layers' calls below are about until the next."""
        return batch

    def whole(self, rows):
        """The number of samples in the whole batch, given this process's `rows`."""
        return rows

    def own_slice(self):
        """The rows of the whole batch that are this process's."""
        return slice(None)

    def chain(self, total, add):
        """add(total) adds this process's samples to the float64 array total in place, in
        sample order; returns the total over the whole batch."""
        add(total)
        return total

    def gather_rows(self, rows):
        """Every process's rows, in sample order: the whole batch."""
        return rows

    # What processes must agree on beside the sums (see convtrain.run.distributed); alone,
    # there is nobody to agree with.

    def any(self, flag):
        return bool(flag)

    def allgather(self, value):
        """[each process's value], in rank order."""
        return [value]

    def all_succeed(self, action):
        return action()

    def root_does(self, action):
        return action()

    def root_first(self, action):
        return action()

    def cores_per_process(self):
        return None  # all this process may run on (runtime.available_cores)
