"""Survival of recoverable failures: a worker process dies mid-day, the day still finishes with the same
result (tasks are pure, lost results are recomputed from their lineage)."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import pytest
from distributed import Client, LocalCluster

from daskcluster.gallery.queries import face_clusters
from daskcluster.run.pipeline import NullProgress, run_day

from ..conftest import make_config

pytestmark = pytest.mark.distributed

CFG = ("search.flat_below=100", "search.nlist=16", "search.nprobe=4", "ingest.partition_mb=0.2")


class KillAfter(NullProgress):
    """Hard-kills the worker holding the most results when ``stage`` finishes (its nanny restarts it)."""

    def __init__(self, client: Client, stage: str):
        self.client, self.stage, self.killed = client, stage, None

    def finish(self, stage: str, seconds: float) -> None:
        super().finish(stage, seconds)
        if stage == self.stage and self.killed is None:
            held = self.client.has_what()
            self.killed = max(held, key=lambda w: len(held[w]))
            with contextlib.suppress(Exception):  # it dies before it can answer: that is the point
                self.client.run(os._exit, 1, workers=[self.killed])
            time.sleep(0.5)


@pytest.mark.parametrize("stage", ["knn-build", "edges"])
def test_worker_killed_mid_day_gives_same_result(client, small_days, tmp_path, stage):
    cfg = make_config(*CFG)
    for d in small_days[:2]:
        run_day(client, d, tmp_path / "ok", cfg)
    expected = face_clusters(tmp_path / "ok").to_pandas().sort_values("face_id").reset_index(drop=True)
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as c,
    ):
        run_day(c, small_days[0], tmp_path / "kill", cfg)
        killer = KillAfter(c, stage)
        result = run_day(c, small_days[1], tmp_path / "kill", cfg, progress=killer)
        assert killer.killed is not None and result.status == "committed"
        assert killer.killed not in c.scheduler_info()["workers"]  # it really died (restarted elsewhere)
    got = face_clusters(tmp_path / "kill").to_pandas().sort_values("face_id").reset_index(drop=True)
    assert got.equals(expected)


def test_shards_stay_on_their_workers(small_days, tmp_path):
    """Query partitions travel to the shards, never the other way: no worker receives a shard's index."""
    from dask.utils import key_split

    cfg = make_config(*CFG, "gallery.shards=3")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as c,
    ):
        for d in small_days[:2]:
            run_day(c, d, tmp_path / "g", cfg)
        logs = c.run(lambda dask_worker: [k for e in dask_worker.transfer_incoming_log for k in e["keys"]])
    moved = {key_split(k) for keys in logs.values() for k in keys}
    partitions = {"ingest", "dedupe", "prepare", "assign-skip", "assign-decide"}  # tasks whose value is a partition
    assert moved & partitions, " ".join(sorted(moved))  # partitions did travel
    assert not moved & {"gallery-index", "knn-build"}, " ".join(sorted(moved))
