"""Whether an MPI launcher (mpiexec, mpirun, srun) started this process, and as which of
how many: read from the environment alone, so that asking loads neither MPI nor NumPy
(`convtrain --help` stays fast, and an ordinary run never touches MPI)."""

import os
import shlex
import shutil
import sys

# What launchers put in each process's environment: MPICH's Hydra, Intel MPI and Slurm's
# PMI2 set PMI_*, Open MPI sets OMPI_COMM_WORLD_*, PMIx launchers PMIX_RANK.
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_rank():
    """This process's rank as its launcher set it, or None for a process no launcher
    started. Read from the environment: it needs no MPI."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def launched_size():
    """How many processes the launcher started (None where it does not say, or none did)."""
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def launcher_command():
    """`mpiexec` in a form to paste: that name where it is on PATH, else the one beside
    this Python (`.venv/bin/mpiexec` after `make demo` and `pip install mpi4py mpich` into
    the venv, which is not on PATH), relative to the working directory when it lies
    under it, as invoked_as names convtrain."""
    if shutil.which("mpiexec"):
        return "mpiexec"
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(beside):
        return "mpiexec"  # a launcher we cannot find: its usual name is the best guess
    relative = os.path.relpath(beside)
    return shlex.quote(beside if relative.startswith("..") else relative)
