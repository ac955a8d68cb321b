"""The history benchmark end to end (tiny): it runs its days on a real cluster and measures what it claims."""

from __future__ import annotations

import pytest

from benchmarks import history

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_history_quick_measures_every_day_and_refuses_the_repeated_ids(tmp_path, capsys):
    summary = history.main(["--quick", "--work", str(tmp_path)])
    assert summary["days"] == 3 and summary["repeated_ids_refused"] == summary["repeated_ids"] == 20
    assert summary["bytes_written_last_over_day2"] > 0 and summary["wall_last_over_day2"] > 0
    assert summary["disk"]["needed"] <= summary["disk"]["total"]
    out = capsys.readouterr().err  # the tables are for people, on stderr; stdout has the JSON lines
    assert "days on one gallery" in out and "on disk after the run" in out
