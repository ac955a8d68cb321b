"""GPU benchmark: the step-2 graph and the components on the device, against exact search on the device.

Run by ``scripts/device_check.sh`` on a machine with a CUDA GPU and CuPy (faiss-gpu and cuGraph are used where
present, not needed). Three measurements, each written as one JSON object to ``--out-dir``:

- ``graph.json``: the all-vs-all k-NN graph of ``--n`` synthetic faces (d ``--dim``): the default (the blocked
  IVF with the day's gap, ``daskcluster.search.graph.self_knn``, backend gpu) against exact search on the GPU
  (``GpuBackend.exact_knn`` on ``--sample`` queries, extrapolated to all). Edge recall >= ``--threshold`` by
  id, as the audit counts it; and the CPU backend's default on the same faces, side by side, for the speed-up.
- ``components.json``: weakly connected components of ``--edges`` random edges on ``--edges / 2`` vertices:
  the CuPy kernel (and cuGraph where present) against the numpy run of the same kernel, labels compared.
- the day end to end is ``benchmarks.first_day --set backend=gpu`` (the script runs it).

``python -m benchmarks.gpu --out-dir DIR [--n 1000000] [--dim 256] [--edges 10000000] [--cpu-n 200000]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.search import drop_self, query_sample, strict_edge_recall, unit_rows
from daskcluster.config import SearchConfig

log = logging.getLogger("bench_gpu")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--sample", type=int, default=20_000, help="exact queries (extrapolated to all n)")
    p.add_argument("--cpu-n", type=int, default=200_000, help="faces of the GPU vs CPU graph (0: skip)")
    p.add_argument("--edges", type=int, default=10_000_000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _sync() -> None:
    import cupy

    cupy.cuda.runtime.deviceSynchronize()


def faces(n: int, dim: int, seed: int) -> np.ndarray:
    from daskcluster.eval.synth import SynthSpec, generate_day_arrays

    spec = SynthSpec(days=1, faces_per_day=n, identities=max(10, n // 5), dim=dim, seed=seed)
    return unit_rows(generate_day_arrays(spec, 0).feature)


def graph(x: np.ndarray, args: argparse.Namespace, backend: str, exact: tuple | None, qids: np.ndarray) -> tuple:
    from daskcluster.search.graph import self_knn

    t0 = time.perf_counter()
    res = self_knn(
        x, args.k + 1, args.threshold, SearchConfig(), backend, threads=1 if backend == "gpu" else os.cpu_count() or 1
    )
    wall = time.perf_counter() - t0
    out = {"backend": backend, "n": len(x), "index": str(res.index), "gap": res.gap, "total_s": round(wall, 2)}
    if exact is not None:
        approx = drop_self(res.D[qids], np.asarray(res.I[qids], np.int64), qids, args.k)
        recall, found, total = strict_edge_recall(approx, exact, args.threshold)
        out.update(edge_recall=round(recall, 5), edges_found=found, edges_total=total)
    return out, res


def exact_gpu(x: np.ndarray, qids: np.ndarray, k: int) -> tuple[tuple, float]:
    from daskcluster.backends import get_backend

    gpu = get_backend("gpu")
    gpu.exact_knn(x[:4096], x[:64], k + 1)  # warm-up: kernels compiled, pool grown
    _sync()
    t0 = time.perf_counter()
    D, I = gpu.exact_knn(x, np.ascontiguousarray(x[qids]), k + 1)
    _sync()
    return drop_self(D, np.asarray(I, np.int64), qids, k), (time.perf_counter() - t0) * len(x) / len(qids)


def bench_graph(args: argparse.Namespace) -> dict:
    x = faces(args.n, args.dim, args.seed)
    qids = query_sample(len(x), args.sample, args.seed)
    truth, exact_s = exact_gpu(x, qids, args.k)
    row, res = graph(x, args, "gpu", truth, qids)
    row["exact_gpu_s"] = round(exact_s, 2)
    row["speedup_vs_exact_gpu"] = round(exact_s / row["total_s"], 2)
    out = {"gpu": row}
    if args.cpu_n:
        xs = x[: args.cpu_n]
        q = query_sample(len(xs), min(args.sample, len(xs)), args.seed)
        small_truth, _ = exact_gpu(xs, q, args.k)
        g, gres = graph(xs, args, "gpu", small_truth, q)
        c, cres = graph(xs, args, "cpu", small_truth, q)
        same = float(np.mean(np.all(np.asarray(gres.I) == np.asarray(cres.I), axis=1)))
        out["side_by_side"] = {
            "gpu": g,
            "cpu": c,
            "speedup": round(c["total_s"] / g["total_s"], 2),
            "rows_with_identical_neighbours": round(same, 5),
        }
    return out


def bench_components(args: argparse.Namespace) -> dict:
    import cupy

    from daskcluster.backends import wcc
    from daskcluster.backends.gpu import GpuBackend

    n = max(2, args.edges // 2)
    rng = np.random.default_rng(args.seed)
    src, dst = rng.integers(0, n, args.edges), rng.integers(0, n, args.edges)
    t0 = time.perf_counter()
    cpu = wcc.connected_components(n, src, dst)
    cpu_s = time.perf_counter() - t0
    wcc.connected_components(1000, cupy.asarray(src[:1000] % 1000), cupy.asarray(dst[:1000] % 1000))  # warm-up
    t0 = time.perf_counter()
    dev = wcc.connected_components(n, cupy.asarray(src), cupy.asarray(dst)).get()
    dev_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend = GpuBackend().connected_components(n, src, dst)  # cuGraph where present, else the same kernel
    backend_s = time.perf_counter() - t0
    return {
        "vertices": n,
        "edges": args.edges,
        "components": int(cpu.max()) + 1,
        "cpu_kernel_s": round(cpu_s, 3),
        "cupy_kernel_s": round(dev_s, 3),
        "gpu_backend_s": round(backend_s, 3),
        "speedup": round(cpu_s / dev_s, 2),
        "labels_equal": bool(np.array_equal(cpu, dev) and np.array_equal(cpu, backend)),
    }


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, fn in (("components", bench_components), ("graph", bench_graph)):
        log.info("%s ...", name)
        results[name] = fn(args)
        (args.out_dir / f"{name}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        log.info("%s: %s", name, json.dumps(results[name]))
    return results


if __name__ == "__main__":
    main()
