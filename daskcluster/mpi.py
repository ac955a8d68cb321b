"""Entry point of ``python -m daskcluster.mpi``: the HPC launcher (see :mod:`daskcluster.deploy.mpi`)."""
from daskcluster.deploy.mpi import main

if __name__ == "__main__":
    main()
