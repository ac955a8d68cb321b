"""benchmarks/search.py at a tiny size: one table of every method, the rows' fields, exact is exact, the
default and its peers recall edges (pynndescent included), and the real sets get rows too."""

from __future__ import annotations

import json

import pytest

import benchmarks.search

FIELDS = {
    "dataset",
    "n",
    "dim",
    "k",
    "queries",
    "method",
    "label",
    "params",
    "train_s",
    "build_s",
    "search_s",
    "total_s",
    "extrapolated",
    "edge_recall",
    "edges_found",
    "edges_total",
    "speedup",
    "meets",
    "threads",
    "meta",
}
HEADERS = (
    "n",
    "method",
    "params",
    "train s",
    "build s",
    "search s",
    "total s",
    "edge recall >=0.6",
    "speed-up",
    "meets",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run: 3000 synthetic faces (300 sampled queries) and the real sets, every method."""
    out = tmp_path_factory.mktemp("bench") / "bench.jsonl"
    argv = ["--sizes", "3000", "--sample", "300", "--seed", "3", "--real-dir", str(benchmarks.search.REAL_DIR)]
    return argv + ["--out", str(out)], out


def test_bench_search_one_table(run, capsys):
    argv, out = run
    records = benchmarks.search.main(argv)
    captured = capsys.readouterr()
    assert [json.loads(line) for line in out.read_text().splitlines()] == records
    assert [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")] == records

    # stdout: the one table, then one verdict line per dataset and size
    lines = captured.out.splitlines()
    head = lines[0]
    assert all(h in head for h in HEADERS) and head.split()[0] == "data"
    for label in ("exact", "default", "default one-way", "faiss IVF-Flat", "faiss HNSW", "pynndescent"):
        assert any(label in line and line.split()[0] == "synthetic" for line in lines[2:])
    assert any(line.startswith("n=3000: the default (edge recall") for line in lines)

    rows = [r for r in records if r["kind"] == "row"]
    synth = [r for r in rows if r["dataset"] == "synthetic"]
    methods = [r["method"] for r in synth]
    assert methods == ["exact", "default", "oneway", "ivf", "ivf", "hnsw", "hnsw", "nndescent"]
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
        assert 0.0 <= r["edge_recall"] <= 1.0 and r["edges_found"] <= r["edges_total"]
        assert r["total_s"] > 0 and r["total_s"] >= r["train_s"] + r["build_s"] + r["search_s"] - 0.01
        target = r["target_speedup"]
        assert r["meets"] == (r["edge_recall"] >= 0.98 and r["speedup"] >= target)
    for r in synth:
        assert r["n"] == 3000 and r["queries"] == 300 and r["k"] == 10 and r["dim"] == 256
        # sampled searches are extrapolated to all faces; the default and pynndescent build the whole graph
        assert r["extrapolated"] == (r["method"] in ("exact", "ivf", "hnsw"))

    by = {(r["method"], r["params"]): r for r in synth}
    exact = synth[0]
    assert exact["edge_recall"] == 1.0 and exact["speedup"] == 1.0 and not exact["meets"]
    assert exact["edges_total"] > 500  # the day has plenty of edges >= 0.6
    for r in synth[1:]:
        assert r["speedup"] == pytest.approx(exact["total_s"] / r["total_s"], rel=0.01, abs=0.01)
    assert by["default", synth[1]["params"]]["edge_recall"] >= 0.95
    assert synth[2]["edge_recall"] >= 0.95
    assert [r["nprobe"] for r in synth if r["method"] == "ivf"] == [16, 64]
    assert [r["ef_search"] for r in synth if r["method"] == "hnsw"] == [64, 128]
    assert max(r["edge_recall"] for r in synth if r["method"] == "ivf") >= 0.99
    assert max(r["edge_recall"] for r in synth if r["method"] == "hnsw") >= 0.99
    assert synth[-1]["edge_recall"] >= 0.9 and synth[-1]["jit_s"] > 0

    real = [r for r in rows if r["dataset"] != "synthetic"]
    assert {r["dataset"] for r in real} == {p.stem for p in benchmarks.search.REAL_DIR.glob("*.parquet")}
    for r in real:  # every face is a query: nothing extrapolated
        assert not r["extrapolated"] and r["queries"] == r["n"]
        if r["method"] == "exact":
            assert r["edge_recall"] == 1.0

    verdicts = [r for r in records if r["kind"] == "verdict"]
    assert len(verdicts) == 1 + len({r["dataset"] for r in real})
    v = verdicts[0]
    assert (v["dataset"], v["n"]) == ("synthetic", 3000) and isinstance(v["default_beats_peers"], bool)
    assert v["default_beats_peers"] == (not v["beaten_by"])
