"""daskcluster: daily clustering of face feature vectors by identity into a durable gallery, on Dask.

Importing the package registers the byte sizes of its objects with Dask (every worker that unpickles one
imports the package first); it never imports a GPU library.
"""
from daskcluster import sizes as _sizes  # noqa: F401

__version__ = "0.1.0"
