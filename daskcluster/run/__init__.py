"""The jobs (a day, consolidation, retrain), written once against an executor: Dask or in-process."""
