"""The day's stages as pure functions over arrays and Parquet rows, with no Dask: each is one task of a job."""
