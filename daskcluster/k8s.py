"""Entry point of ``python -m daskcluster.k8s``: the DaskJob submitter (see :mod:`daskcluster.deploy.k8s`)."""

from daskcluster.deploy.k8s import main

if __name__ == "__main__":
    main()
