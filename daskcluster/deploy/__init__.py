"""Where the jobs run: the Dask connection (a local cluster from the backend, or an existing scheduler) and the
Kubernetes DaskJob submitter."""
