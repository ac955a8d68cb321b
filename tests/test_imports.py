"""Importing the package (and running the CPU path's modules) never imports a GPU library."""
import subprocess
import sys

GPU_MODULES = ("cupy", "cudf", "cugraph", "dask_cuda", "rmm")


def test_import_does_not_load_gpu_libraries():
    code = ("import sys, daskcluster, daskcluster.cli, daskcluster.pipeline, daskcluster.backends;"
            "daskcluster.backends.get_backend('cpu');"
            f"print([m for m in {GPU_MODULES!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_backend_falls_back_to_cpu_without_gpu():
    from daskcluster.backends import resolve_backend_name

    code = "from daskcluster.backends import resolve_backend_name as r; print(r('auto'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("cpu", "gpu")
    assert resolve_backend_name("cpu") == "cpu"


def test_dask_knows_the_size_of_a_partition():
    import numpy as np
    import pyarrow as pa
    from dask.sizeof import sizeof

    from daskcluster.stages.ingest import Part

    part = Part(0, np.arange(1000), np.zeros((1000, 256), np.float32), pa.table({"a": np.arange(1000)}))
    assert sizeof(part) >= 1000 * 256 * 4
