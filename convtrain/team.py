"""The processes that share a training batch, as the layers see them.

A batch of B samples is split into K contiguous shares of B/K, one per process (rank r holds
samples r*B/K .. (r+1)*B/K - 1). Whatever sums over the batch must come out bit-identical for
any K, so every such sum is one of two kinds:

- chain: a float64 running total in sample order. Rank 0 adds its samples, hands the total
  to rank 1, which carries on with its own, and so on; the last rank's total is everyone's.
  The additions are exactly those of one process adding up the whole batch.
- gather_rows: the rows themselves (scores, per-sample values), put together in sample
  order on every process, which then computes as one process would.

`Solo` is the one process of an ordinary run: its chain adds, its gather returns what it was
given, and it costs nothing. `convtrain.distributed.MpiTeam` is the same over MPI.
"""


class Solo:
    """One process computing the whole batch."""

    size = 1
    rank = 0
    is_root = True

    def __init__(self):
        self.comm_seconds = 0.0  # time spent communicating and waiting: none

    def own_rows(self, batch):
        """This process's share of a whole batch (an array or sequence of B rows)."""
        return batch

    def chain(self, total, add):
        """add(total) adds this process's samples to the float64 array total in place, in
        sample order; returns the total over the whole batch."""
        add(total)
        return total

    def gather_rows(self, rows):
        """Every process's rows, in sample order: the whole batch."""
        return rows
