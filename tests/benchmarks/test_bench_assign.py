"""benchmarks/assign.py at a tiny size: one table, exact is exact, every method decides nearly as exact does,
and the rows carry what the table shows."""

from __future__ import annotations

import json

import pytest

import benchmarks.assign


def test_bench_assign_one_table(tmp_path, capsys):
    out = tmp_path / "assign.jsonl"
    argv = ["--sizes", "30000", "--sample", "1500", "--seed", "2", "--threads", "2", "--out", str(out)]
    records = benchmarks.assign.main(argv)
    captured = capsys.readouterr()
    assert [json.loads(line) for line in out.read_text().splitlines()] == records
    assert [r["method"] for r in records] == ["exact", "default", "pq", "nospill", "previous", "ivf"]
    exact, default, pq = records[0], records[1], records[2]
    assert exact["agreement"] == 1.0 and exact["extrapolated"] and 0.5 < exact["assigned"] < 1.0
    assert default["agreement"] >= 0.99 and not default["extrapolated"] and default["spilled"] > 0
    assert "PQ128 rerank 8" in pq["params"] and pq["agreement"] >= 0.98  # the codes choose, exact scores rank
    assert records[3]["spilled"] == 0 and "nprobe<=32" in records[4]["params"]
    for r in records[1:]:
        assert r["speedup"] == pytest.approx(exact["total_s"] / r["total_s"], rel=0.01, abs=0.01)
        assert r["meets"] == (r["agreement"] >= 0.995)
    table = captured.out
    assert (
        "agreement" in table
        and "capped, no spill" in table
        and "default, pq codes" in table
        and "faiss IVF-Flat" in table
    )
    assert all(json.loads(line)["bench"] == "assign" for line in captured.err.splitlines() if line.startswith("{"))
