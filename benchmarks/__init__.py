"""The project's benchmarks, run from the repository root: ``python -m benchmarks.search``,
``python -m benchmarks.scaling``, ``python -m benchmarks.quality`` (``make bench`` runs all three).

They share one harness (:mod:`benchmarks.common`: options, run metadata, JSON lines, tables). Being a package
of the repository, ``benchmarks`` is importable on the workers of a ``LocalCluster`` started from it (spawned
worker processes start with the driver's ``sys.path``), so its functions and classes travel by reference.
"""
