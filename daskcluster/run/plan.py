"""Planning a day before anything runs: which gallery state it starts from, whether it is a no-op, and
checks that refuse it (day order, dimension). Reads only manifests and Parquet footers."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config
from daskcluster.gallery.layout import DayOutputs, day_outputs
from daskcluster.gallery.manifest import DayRecord, GalleryError, Manifest, read_manifest
from daskcluster.gallery.store import gpath
from daskcluster.stages.inputs import (
    InputError,
    InputFile,
    PartitionSpec,
    discover_inputs,
    estimate_dim,
    infer_day,
    input_checksum,
    inspect_inputs,
    plan_partitions,
)

log = logging.getLogger(__name__)


@dataclass
class BaseState:
    """The gallery as it was after the last committed day before this one."""

    snapshot: str | None = None
    next_cluster_id: int = 0
    n_clusters: int = 0
    n_faces: int = 0
    days: list[DayRecord] = field(default_factory=list)
    quantizer: dict | None = None
    preprocess: dict | None = None
    deltas: list[str] = field(default_factory=list)
    lists: str | None = None
    base_rows: int = 0
    delta_rows: int = 0
    id_index: dict | None = None


@dataclass
class DayPlan:
    day: str
    gallery: Path
    files: list[Path]
    infos: list[InputFile]
    dim: int | None  # None until the data is scanned (variable-length lists on a first day)
    partitions: list[PartitionSpec]
    checksum: str
    manifest: Manifest | None
    base: BaseState
    version: int
    n_shards: int
    skip_reason: str | None = None
    dropped_days: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> DayOutputs:
        """Gallery-relative paths this run writes (all new: named by the new version)."""
        return day_outputs(self.version, self.day)


def base_state(manifest: Manifest | None, day: str) -> BaseState:
    if manifest is None:
        return BaseState()
    kept = sorted((d for d in manifest.days if d.day < day), key=lambda d: d.day)
    if not kept:
        return BaseState()
    last = kept[-1]
    if last.vacuumed:
        raise GalleryError(
            f"cannot recompute day {day}: the gallery as it was after day {last.day} was removed by vacuum "
            f"(gallery.keep_versions); the days that can be recomputed are {', '.join(_recomputable(manifest))}"
        )
    return BaseState(
        last.snapshot,
        last.next_cluster_id_after,
        last.n_clusters_after,
        last.n_faces_after,
        kept,
        last.quantizer,
        last.preprocess,
        list(last.deltas),
        last.lists,
        last.base_rows,
        last.delta_rows,
        last.id_index,
    )


def _recomputable(manifest: Manifest) -> list[str]:
    """The days whose starting state is on disk: the first day (it starts from nothing) and every day after a
    state that vacuum kept."""
    days = sorted(manifest.days, key=lambda d: d.day)
    return [d.day for prev, d in zip([None, *days], days) if prev is None or not prev.vacuumed]


def _check_order(manifest: Manifest | None, day: str, checksum: str, force: bool) -> str | None:
    """The reason the run is a no-op, or None; raises when the day is refused."""
    if manifest is None:
        return None
    record = manifest.day(day)
    if record is not None and not force:
        same = "same input" if record.input_checksum == checksum else "input DIFFERS from the committed one"
        return f"day {day} is already committed (version {record.version}, {same}); use --force to recompute"
    last = manifest.last_day
    if not force and last is not None and day < last:
        raise GalleryError(
            f"day {day} is before the last committed day {last}; use --force to recompute "
            f"it from the snapshot before it (later days are then dropped)"
        )
    return None


def shard_count(cfg: Config, dim: int) -> int:
    """Gallery shards from the memory budget: ``gallery.max_clusters`` means of ``dim`` float32 in shards of
    ``gallery.shard_mb``. Fixed at the first day (``cluster_id % shards`` is the owner), and independent of
    the number of workers, so the clusters do not depend on it either."""
    if cfg.gallery.shards:
        return cfg.gallery.shards
    return max(1, math.ceil(cfg.gallery.max_clusters * dim * 4 / 2**20 / cfg.gallery.shard_mb))


def plan_day(input_path: str | Path, gallery: str | Path, cfg: Config, day: str | None, force: bool) -> DayPlan:
    files = discover_inputs(input_path)
    day = day or infer_day(input_path)
    if day is None:
        raise InputError(f"cannot tell the day of {input_path}: pass --day YYYY-MM-DD or use a day=YYYY-MM-DD path")
    manifest = read_manifest(gallery)
    infos, dim = inspect_inputs(files, cfg.ingest, manifest.dim if manifest else None)
    checksum = input_checksum(files)
    skip = _check_order(manifest, day, checksum, force)
    n_shards = manifest.n_shards if manifest else shard_count(cfg, dim or estimate_dim(infos, cfg.ingest))
    backend = resolve_backend_name(cfg.backend)
    partitions = plan_partitions(infos, dim or estimate_dim(infos, cfg.ingest), cfg.ingest, backend)
    plan = DayPlan(
        day,
        gpath(gallery),
        files,
        infos,
        dim,
        partitions,
        checksum,
        manifest,
        base_state(manifest, day),
        (manifest.version if manifest else 0) + 1,
        n_shards,
        skip,
    )
    if manifest is not None and skip is None:
        plan.dropped_days = sorted(d.day for d in manifest.days if d.day >= day)
    return plan
