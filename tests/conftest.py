"""Shared fixtures: a real Dask LocalCluster (worker processes) for the session, small labelled data."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from daskcluster.config import load_config
from daskcluster.eval.synth import SynthSpec, write_dataset
from daskcluster.run.executor import DaskExecutor, InProcessExecutor

REAL_DATA = Path(__file__).resolve().parent / "data" / "real"


@pytest.fixture(scope="session")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="session")
def small_days(tmp_path_factory) -> list[Path]:
    """Three labelled days: 1500 faces a day, 300 identities, d=256."""
    out = tmp_path_factory.mktemp("small")
    return write_dataset(SynthSpec(days=3, faces_per_day=1500, identities=300, dim=256, seed=11), out)


def make_config(*overrides: str):
    return load_config(None, list(overrides), environ={})


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes (for 'the gallery is byte-identical')."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class _Counting:
    """Counts the tasks an executor submits, by name (``counts``)."""

    def _key(self, name: str) -> str:
        self.counts = getattr(self, "counts", Counter())
        self.counts[name] += 1
        return super()._key(name)


class CountingDask(_Counting, DaskExecutor):
    pass


class CountingInProcess(_Counting, InProcessExecutor):
    """In process, pretending handle ``i`` of every list lives on ``homes[i % len(homes)]``."""

    def __init__(self, homes: list | None = None):
        super().__init__()
        self.counts: Counter = Counter()
        self.fake_homes = homes

    def homes(self, handles: list) -> list:
        if not self.fake_homes:
            return super().homes(handles)
        return [self.fake_homes[i % len(self.fake_homes)] for i in range(len(handles))]
