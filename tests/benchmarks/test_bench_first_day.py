"""The first-day benchmark end to end (tiny): both modes on a real cluster, the ratio printed."""

from __future__ import annotations

import pytest

from benchmarks import first_day

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_first_day_runs_both_modes_side_by_side(tmp_path, capsys):
    recs = first_day.main(["--n", "4000", "--dim", "64", "--set", "search.flat_below=500", "--work", str(tmp_path)])
    by = {r["mode"]: r for r in recs}
    assert by["default"]["knn_index"].startswith("IVF") and by["exact"]["knn_index"].startswith("Flat")
    assert by["default"]["edge_recall"] >= 0.9 and by["exact"]["new_clusters"] > 0
    assert all(r["wall_s"] > 0 and r["stage_seconds"]["edges"] > 0 for r in recs)
    assert by["default"]["task_seconds"]["calibrate-search"] > 0 and 0 < by["default"]["audit_share"] < 1
    assert "calibrate-search" not in by["exact"]["task_seconds"] and by["exact"]["worker_seconds"] > 0
    assert "exact-mode day / default day" in capsys.readouterr().err
