"""The scaling benchmark's inputs: the synthetic day(s) as Parquet and the starting gallery, written directly in
the gallery format; both under ``--workdir``, reused when present (a ``.done`` marker beside each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT
from daskcluster.config import Config
from daskcluster.eval.synth import SynthSpec, identity_centres, write_dataset

log = logging.getLogger("bench_scaling")

DAY = "2026-01-01"  # SynthSpec's default start_date: the day run
BASE_DAY = "2025-12-31"  # the synthetic committed day of the starting gallery


def synth_spec(args: argparse.Namespace, n: int) -> SynthSpec:
    return SynthSpec(days=1, faces_per_day=n, identities=args.identities, dim=args.dim, seed=args.seed)


def day_dir(args: argparse.Namespace, n: int) -> Path:
    return Path(args.workdir) / f"day-n{n}-d{args.dim}-i{args.identities}-s{args.seed}" / f"day={DAY}"


def gallery_dir(args: argparse.Namespace) -> Path:
    return Path(args.workdir) / (
        f"gallery-c{args.gallery_clusters}-d{args.dim}-i{args.identities}"
        f"-sh{args.shards}-cnt{args.cluster_count}-s{args.seed}"
    )


def _done(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def day_sizes(args: argparse.Namespace) -> list[int]:
    return [args.n] + ([max(100, args.n // 4)] if args.memory_quarter else [])


def prepare_day(args: argparse.Namespace, n: int) -> Path:
    """The synthetic day of ``n`` faces as Parquet (reused when present)."""
    target = day_dir(args, n)
    marker = _done(target.parent)
    if marker.exists():
        return target
    shutil.rmtree(target.parent, ignore_errors=True)
    t0 = time.perf_counter()
    spec = synth_spec(args, n)
    write_dataset(spec, target.parent)
    marker.write_text(json.dumps(dataclasses.asdict(spec), default=str))
    log.warning("wrote the %d-face day under %s in %.1f s", n, target, time.perf_counter() - t0)
    return target


def gallery_centres(args: argparse.Namespace) -> np.ndarray:
    """The identity centres of the day's population (so most faces are assigned, as in production), then random
    unit centres up to ``--gallery-clusters``."""
    c, d, ident = args.gallery_clusters, args.dim, args.identities
    centres = np.empty((c, d), np.float32)
    identity_centres(synth_spec(args, args.n), np.arange(ident, dtype=np.int64), centres[:ident])
    rng = np.random.default_rng([args.seed, 7177])
    for lo in range(ident, c, 65_536):
        hi = min(c, lo + 65_536)
        block = rng.standard_normal((hi - lo, d), dtype=np.float32)
        centres[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return centres


def write_quantizer(args: argparse.Namespace, cfg: Config, root: Path, centres: np.ndarray) -> dict | None:
    """The gallery's IVF quantizer, as a committed day would have left it (None while the index rule says
    flat), so that the measured day reuses it and its stored list ids, as a normal day does."""
    from daskcluster.backends import get_backend, resolve_backend_name
    from daskcluster.gallery.layout import quantizer_path
    from daskcluster.gallery.manifest import write_npy_atomic
    from daskcluster.search import choose_index, sample_rows, train_size

    spec = choose_index(len(centres), cfg.search)
    if spec.is_flat:
        return None
    ids = np.arange(len(centres), dtype=np.int64)
    _, sample = sample_rows(ids, centres, train_size(spec, cfg.search))
    centroids = get_backend(resolve_backend_name(cfg.backend)).train_quantizer(sample, spec.nlist, 1234)
    write_npy_atomic(centroids, root / quantizer_path(1))
    return {"path": quantizer_path(1), "nlist": spec.nlist, "centroids": centroids}


def write_snapshot(
    args: argparse.Namespace, root: Path, centres: np.ndarray, quantizer: dict | None = None, backend: str = "cpu"
) -> str:
    """Cluster ``i`` in shard ``i % --shards``, counted ``--cluster-count`` faces, listed under ``quantizer``;
    the snapshot's directory."""
    from daskcluster.gallery.layout import version_dir
    from daskcluster.gallery.tables import write_shard
    from daskcluster.search import nearest_lists
    from daskcluster.stages.centres import CentreTable

    snapshot = version_dir("snapshots", 1)
    day = np.datetime64(BASE_DAY, "D")
    for s in range(args.shards):
        ids = np.arange(s, len(centres), args.shards, dtype=np.int64)
        write_shard(
            CentreTable(
                s,
                ids,
                np.full(len(ids), args.cluster_count, np.int64),
                centres[ids],
                np.full(len(ids), day),
                np.full(len(ids), day),
                np.ones(len(ids), bool),
                None if quantizer is None else nearest_lists(quantizer["centroids"], centres[ids], backend),
            ),
            root / snapshot,
        )
    return snapshot


def write_base_manifest(
    args: argparse.Namespace, cfg: Config, root: Path, snapshot: str, quantizer: dict | None = None
) -> None:
    """One synthetic committed day whose assignments directory is empty (and so an empty face-id index), with
    the quantizer its clusters are listed under."""
    from daskcluster.gallery import ids
    from daskcluster.gallery.layout import version_dir
    from daskcluster.gallery.manifest import DayRecord, Manifest, now_utc, write_manifest

    stored = None if quantizer is None else {"path": quantizer["path"], "nlist": quantizer["nlist"]}
    state = {
        "lists": stored and stored["path"],
        "base_rows": args.gallery_clusters,
        "id_index": ids.empty_index(ids.bucket_count(cfg.gallery.id_buckets, args.n)),
    }

    c = args.gallery_clusters
    assignments, report = version_dir("assignments", 1, BASE_DAY), version_dir("reports", 1, BASE_DAY)
    (root / assignments).mkdir(parents=True, exist_ok=True)  # no faces of the past: the duplicate check is free
    (root / report).mkdir(parents=True, exist_ok=True)
    (root / report / "summary.json").write_text(json.dumps({"synthetic": "starting gallery of benchmarks.scaling"}))
    n_faces = c * args.cluster_count
    record = DayRecord(
        day=BASE_DAY,
        version=1,
        snapshot_before=None,
        snapshot=snapshot,
        assignments=assignments,
        quarantine=None,
        report=report,
        input_checksum="synthetic",
        config_digest=cfg.digest(),
        config=cfg.to_dict(),
        next_cluster_id_before=0,
        next_cluster_id_after=c,
        n_clusters_after=c,
        n_faces_after=n_faces,
        n_faces=n_faces,
        n_quarantined=0,
        committed_at=now_utc(),
        quantizer=stored,
        **state,
    )
    write_manifest(
        root,
        Manifest(
            dim=args.dim,
            n_shards=args.shards,
            version=1,
            next_cluster_id=c,
            snapshot=snapshot,
            n_clusters=c,
            n_faces=n_faces,
            days=[record],
            quantizer=stored,
            **state,
        ),
    )


def prepare_gallery(args: argparse.Namespace, cfg: Config) -> Path:
    """The starting gallery, written directly in the gallery format (reused when present)."""
    root = gallery_dir(args)
    marker = _done(root)
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    centres = gallery_centres(args)
    quantizer = write_quantizer(args, cfg, root, centres)
    snapshot = write_snapshot(args, root, centres, quantizer)
    write_base_manifest(args, cfg, root, snapshot, quantizer)
    marker.write_text(
        json.dumps({"clusters": args.gallery_clusters, "identities": args.identities, "shards": args.shards})
    )
    log.warning(
        "wrote the %d-cluster starting gallery under %s in %.1f s",
        args.gallery_clusters,
        root,
        time.perf_counter() - t0,
    )
    return root


def prepare_all(args: argparse.Namespace, cfg: Config) -> None:
    prepare_gallery(args, cfg)
    for n in day_sizes(args):
        prepare_day(args, n)


def prepare_in_subprocess(args: argparse.Namespace) -> None:
    """Generate the data in a child process (``python -m benchmarks.scaling ... --prepare-only``), so the driver's
    RSS is not that of the generator."""
    if all(_done(day_dir(args, n).parent).exists() for n in day_sizes(args)) and _done(gallery_dir(args)).exists():
        return
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "benchmarks.scaling", *args.argv, "--prepare-only"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path})
