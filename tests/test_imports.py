"""Importing the package (and running the CPU path's modules) never imports a GPU library."""

import subprocess
import sys

GPU_MODULES = ("cupy", "cudf", "cugraph", "dask_cuda", "rmm")


def test_import_does_not_load_gpu_libraries():
    code = (
        "import sys, daskcluster, daskcluster.cli, daskcluster.run.pipeline, daskcluster.backends;"
        "daskcluster.backends.get_backend('cpu');"
        f"print([m for m in {GPU_MODULES!r} if m in sys.modules])"
    )
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


def test_only_backends_import_device_libraries():
    """faiss, cupy, cudf and cugraph (what differs between CPU and GPU) are imported in ``backends/`` alone."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "daskcluster"
    device = {"faiss", "cupy", "cudf", "cugraph", "dask_cuda", "rmm", "cuvs"}
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "backends":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.relative_to(package)}: {n}" for n in names if n.split(".")[0] in device]
    assert found == []


LAYERS = ["config", "backends", "search", "stages", "gallery", "run", "eval", "deploy", "cli"]
LOWER = {
    "eval.metrics": "config",
    "eval.report": "gallery",
}  # leaves that sit below their folder (docs/architecture.md)


def _layer(module: str) -> int:
    """The layer of a dotted module name inside the package (entry points ``mpi``, ``k8s``: above all)."""
    for prefix, layer in LOWER.items():
        if module == prefix:
            return LAYERS.index(layer)
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else len(LAYERS) if head else 0


def test_each_layer_imports_only_itself_and_the_layers_below():
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "daskcluster"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        here = ".".join(p for p in rel.parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daskcluster"):
                targets = (
                    [node.module[len("daskcluster.") :]]
                    if node.module != "daskcluster"
                    else [a.name for a in node.names]
                )
                wrong += [f"{here} -> {t}" for t in targets if _layer(t) > _layer(here)]
    assert wrong == []
