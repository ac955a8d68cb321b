"""daskcluster: daily clustering of face feature vectors by identity into a durable gallery, on Dask.

Layers, each importing only from itself and those before it: ``config``, ``backends`` (the only place that
imports a compute library that differs between CPU and GPU), ``search``, ``stages`` (pure array functions),
``gallery`` (storage), ``run`` (the jobs, against an executor), ``eval``, ``deploy``, ``cli``. Importing the
package never imports a GPU library.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daskcluster")  # the one source is pyproject.toml
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
