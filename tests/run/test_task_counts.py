"""Fan-outs grouped by worker: a day's task count grows with partitions x workers (and a consolidation's with
shards x workers), never with partitions x shards or shards x shards, and the results do not depend on the
grouping."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from daskcluster.run.consolidate import _apply
from daskcluster.run.day_cluster import _annotations
from daskcluster.run.executor import Done
from daskcluster.stages import linking
from daskcluster.stages.centres import CentreTable
from daskcluster.stages.consolidate import Merges, absorb, take_absorbed

from ..conftest import CountingInProcess

HOMES = ([None], ["w0", "w1", "w0", "w2", "w1"], ["a", "b", "c", "d", "e"])


def _neighbour_lists(sizes: list[int], k: int, seed: int) -> list[linking.Neighbours]:
    """Random k-NN lists of consecutive partitions (no self loops, some empty slots)."""
    rng = np.random.default_rng(seed)
    n, offsets = sum(sizes), np.cumsum([0, *sizes])
    nbr = np.stack([rng.choice(np.delete(np.arange(n), v), k, replace=False) for v in range(n)])
    sim = np.sort(rng.uniform(0.5, 1.0, (n, k)).astype(np.float32), axis=1)[:, ::-1]
    sim[rng.random((n, k)) < 0.2] = -np.inf
    nbr[~np.isfinite(sim)] = -1
    return [linking._with_density(int(a), sim[a:b], nbr[a:b]) for a, b in zip(offsets, offsets[1:])]


@pytest.mark.parametrize("homes", HOMES)
def test_annotations_one_task_per_partition_and_worker(homes):
    nbs = _neighbour_lists([7, 5, 9, 6, 8, 4, 6], 4, seed=1)
    groups = [range(0, 2), range(2, 3), range(3, 4), range(4, 6), range(6, 7)]  # graph shards
    whole = linking.concat(nbs)
    ex = CountingInProcess(homes)
    got = ex.gather(_annotations(ex, groups, ex.homes(groups), [Done(nb) for nb in nbs]))
    assert ex.counts["annotate"] == len(nbs) * len(set(homes))
    for ann, nb in zip(got, nbs):
        want = linking.annotate(whole, nb)
        for f in dataclasses.fields(want):
            assert np.array_equal(getattr(ann, f.name), getattr(want, f.name)), f.name


def _tables(n_shards: int, n: int, dim: int, seed: int) -> list[CentreTable]:
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64)
    day = np.datetime64("2026-01-01") + rng.integers(0, 9, n).astype("timedelta64[D]")
    count, mean = rng.integers(1, 20, n), rng.standard_normal((n, dim)).astype(np.float32)
    return [
        CentreTable(s, ids[m], count[m], mean[m], day[m], day[m] + 1, np.ones(m.sum(), bool))
        for s in range(n_shards)
        for m in [ids % n_shards == s]
    ]


@pytest.mark.parametrize("homes", HOMES)
def test_consolidate_apply_moves_once_per_shard_and_worker(homes):
    tables = _tables(5, 60, 8, seed=2)
    perm = np.random.default_rng(3).permutation(60)
    a, b = np.minimum(perm[:20], perm[20:40]), np.maximum(perm[:20], perm[20:40])
    merges = Merges(a, b, np.full(20, 0.9, np.float32))
    moved = [take_absorbed(t, merges, len(tables)) for t in tables]  # the old S x S picks, as a reference
    ref = [absorb(t, [m[s] for m in moved], merges) for s, t in enumerate(tables)]
    ex = CountingInProcess(homes)
    got = ex.gather(_apply(SimpleNamespace(ex=ex), [Done(t) for t in tables], merges))
    assert ex.counts["moved"] == len(tables) * len(set(homes))
    assert ex.counts["consolidate-absorb"] == len(tables)
    for g, w in zip(got, ref):
        for f in dataclasses.fields(w):
            assert np.array_equal(getattr(g, f.name), getattr(w, f.name)), f.name
