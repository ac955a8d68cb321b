"""What a gallery holds on disk, and removing what no retained version points to (``vacuum``).

Every version is immutable and named by the manifest version that wrote it, so old states stay readable
(a forced re-run starts from the state before its day) until vacuum removes them. A *retained state* is the
current manifest and the states after each of the last ``keep`` committed days; vacuum deletes every file
under the gallery's version-named directories that none of them points to: superseded bases and deltas,
quantizers, centring means, lineage and face-id index runs, and the assignments, quarantine and reports of
versions that are no longer committed (a forced day's earlier run, a failed run's leftovers), and the Dask
performance profile (``dask-report.html``) of days older than the retained ones. The committed days' own
assignments, quarantine and summaries are never removed: they are the record of every face.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from daskcluster.gallery import ids
from daskcluster.gallery.layout import MANIFEST
from daskcluster.gallery.manifest import MANIFESTS, DayRecord, Manifest, write_manifest
from daskcluster.gallery.store import gpath, listing, remove_tree, tree_bytes

log = logging.getLogger(__name__)

__all__ = ["KINDS", "VacuumResult", "bytes_by_kind", "paths_bytes", "referenced", "vacuum"]

# top-level directories of a gallery, each a kind of file
KINDS = ("snapshots", "deltas", "assignments", "quarantine", "reports", "ids", "quantizers", "preprocess", "lineage")
_STATE_KINDS = ("snapshots", "deltas", "ids", "quantizers", "preprocess", "lineage")  # versions of the state
_DAY_KINDS = ("assignments", "quarantine", "reports")  # day=D/vNNNNNN per committed day


def paths_bytes(root: str | Path, rels: list[str]) -> int:
    """Bytes of the files at (or under) the gallery-relative paths ``rels`` that exist."""
    return sum(tree_bytes(gpath(root) / rel) for rel in rels)


def bytes_by_kind(root: str | Path) -> dict[str, int]:
    """Bytes on disk per kind (top-level directory), the manifest included."""
    out = {kind: paths_bytes(root, [kind]) for kind in KINDS}
    out["manifest"] = paths_bytes(root, [MANIFEST, MANIFESTS])
    return out


def _state_paths(record) -> set[str]:
    """What one state (a day record or the manifest) points to."""
    paths = {record.snapshot, *record.deltas} - {None}
    for ref in (record.quantizer, record.preprocess):
        if ref:
            paths |= {v for k, v in ref.items() if k in ("path", "centre")}
    if getattr(record, "lineage", None):
        paths.add(record.lineage)
    if record.id_index:
        paths |= set(ids.run_paths(record.id_index))
    return paths


def _retained(manifest: Manifest, keep: int) -> list[DayRecord]:
    days = sorted(manifest.days, key=lambda d: d.day)
    return days[-keep:] if keep > 0 else days


def referenced(manifest: Manifest, keep: int) -> set[str]:
    """Every gallery-relative path a retained state points to, and every committed day's own outputs."""
    paths = _state_paths(manifest)
    for record in _retained(manifest, keep):
        paths |= _state_paths(record)
    for record in manifest.days:
        paths |= {record.assignments, record.report} | ({record.quarantine} if record.quarantine else set())
    return paths


def _candidates(root: Path) -> list[str]:
    """The version-named entries of a gallery: ``kind/vNNNNNN...`` and ``kind/day=D/vNNNNNN``."""
    out = []
    for kind in _STATE_KINDS:
        out += [f"{kind}/{p.name}" for p in listing(root / kind, "v*")]
    for kind in _DAY_KINDS:
        out += [f"{kind}/{d.name}/{p.name}" for d in listing(root / kind, "day=*") for p in listing(d, "v*")]
    return out


PROFILE = "dask-report.html"


def _old_profiles(root: Path, manifest: Manifest, keep: int) -> list[str]:
    """The performance profiles of the days whose state is not retained."""
    kept = {d.day for d in _retained(manifest, keep)}
    rels = [f"{d.report}/{PROFILE}" for d in manifest.days if d.day not in kept]
    return [r for r in rels if (root / r).exists()]


def _version_of(rel: str) -> int:
    name = rel.rsplit("/", 1)[-1]
    return int(name[1:7])


@dataclass
class VacuumResult:
    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_days: list[str] = field(default_factory=list)
    dry_run: bool = False


def vacuum(root: str | Path, manifest: Manifest, keep: int, dry_run: bool = False) -> VacuumResult:
    """Remove what no retained state points to (``keep`` > 0: the states after the last ``keep`` days); the
    dropped states' day records are marked ``vacuumed`` (a new manifest version), so a forced re-run that needs
    one says so. Entries of
    versions newer than the manifest (a run in progress) are never touched."""
    root = gpath(root)
    keep_paths = referenced(manifest, keep)
    doomed = [r for r in _candidates(root) if r not in keep_paths and _version_of(r) <= manifest.version]
    doomed += _old_profiles(root, manifest, keep)
    result = VacuumResult(doomed, paths_bytes(root, doomed), [d.day for d in _retained(manifest, keep)], dry_run)
    if dry_run:
        return result
    kept = set(result.kept_days)
    days = [d if d.day in kept or d.vacuumed else dataclasses.replace(d, vacuumed=True) for d in manifest.days]
    if days != manifest.days:
        # committed first (as a new version: a manifest is never rewritten in place), so that no record a
        # reader trusts points at a file about to be removed
        write_manifest(root, dataclasses.replace(manifest, version=manifest.version + 1, days=days))
    for rel in doomed:
        remove_tree(root / rel)
    log.info("vacuum: removed %d entries (%d bytes)", len(doomed), result.bytes_freed)
    return result
