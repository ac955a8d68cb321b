"""Entry point of ``python -m daskcluster.mpi``: the HPC launcher (see :mod:`daskcluster.cli.mpi`)."""

from daskcluster.cli.mpi import main

if __name__ == "__main__":
    main()
