"""Step 0 of a day on the executor: read, validate and partition the input, drop duplicates within the day and
against the gallery, then centre features and flag low-quality faces."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from daskcluster.gallery import ids
from daskcluster.gallery.manifest import GalleryError, assignment_files, load_npy
from daskcluster.run.day import Day
from daskcluster.stages import ingest, prepare
from daskcluster.stages.inputs import InputError, length_histogram, modal_length

log = logging.getLogger(__name__)

__all__ = ["Ingested", "Prepared", "ingest_day", "prepare_day", "scan_dim"]


@dataclass
class Ingested:
    """Per partition, a handle of its valid rows (and its quarantined ones); the day's row counts; per id
    bucket, a handle of the day's new ids (what the face-id index gains when the day commits) and the index
    the day started from."""

    parts: list
    faces_in: int
    faces_valid: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    new_ids: list  # per group of id buckets, a handle of {bucket: its new ids}
    id_index: dict
    id_groups: list  # the groups of id buckets, one dedupe task each (ranges of bucket numbers)


@dataclass
class Prepared:
    """The partitions centred and quality-flagged; ``new_mean`` is the centring mean learned today (a first day
    with ``preprocess.centre``), to be written at commit."""

    parts: list
    low_quality: int
    new_mean: object = None


def scan_dim(ex, day: Day) -> int:
    """A first day of variable-length lists: the most common length, counted on the workers."""
    feature = day.cfg.ingest.feature_column
    hists = ex.wait("dim-scan", [ex.submit("dim-scan", length_histogram, s, feature) for s in day.plan.partitions])
    return modal_length(ex.gather(hists), feature)


DEDUPE_TASKS = 32  # most duplicate-finding tasks: id buckets are handled in groups (the work is small)


def _bucket_groups(n_buckets: int) -> list[range]:
    size = -(-n_buckets // min(n_buckets, DEDUPE_TASKS))
    return [range(j, min(j + size, n_buckets)) for j in range(0, n_buckets, size)]


def _select(bucketed: list, group: range) -> list:
    """The ``bucket`` task: one partition's ids of a group of buckets."""
    return [bucketed[j] for j in group]


def _group_duplicates(per_part: list[list], root: str, runs: list[dict], group: range) -> tuple[list, dict]:
    """The ``duplicates`` task of a group of buckets: the rows to drop, and each bucket's new ids."""
    drop, new = [], {}
    for k, j in enumerate(group):
        found, new[j] = _bucket_duplicates([p[k] for p in per_part], root, runs, j)
        drop += found
    return drop, new


def _bucket_duplicates(day_ids: list, root: str, runs: list[dict], bucket: int) -> tuple[list, np.ndarray]:
    """The ``duplicates`` task of one id bucket: the rows to drop (repeats within the day, ids the face-id
    index holds) and the bucket's new ids."""
    every = np.concatenate([d[0] for d in day_ids]) if day_ids else np.empty(0, np.int64)
    uniq = np.unique(every)
    known = uniq[ids.lookup(root, runs, bucket, uniq)] if runs and len(uniq) else uniq[:0]
    return ingest.find_duplicates(day_ids, [known]), np.setdiff1d(uniq, known, assume_unique=True)


def _rebuilt_index(ex, day: Day, buckets: int) -> dict:
    """A gallery written before the face-id index: one built from its committed assignments (read once)."""
    files = [str(f) for f in assignment_files(day.plan.gallery, day.plan.base.days)]
    log.warning("the gallery has no face-id index: building one from %d assignment files", len(files))
    task = ex.submit("id-rebuild", ids.rebuild, str(day.plan.gallery), files, day.plan.version - 1, buckets)
    return ex.gather(ex.wait("dedupe", [task])[0])


def _dedupe(ex, day: Day, parts: list) -> tuple[list, list, dict, list]:
    """Duplicates within the day and against the face-id index, bucketed by id hash across tasks: a day's
    work follows its own ids (the index's Bloom filters, and the runs only where they report a hit)."""
    base = day.plan.base
    buckets = ids.bucket_count(day.cfg.gallery.id_buckets, sum(s.stop - s.start for s in day.plan.partitions))
    index = base.id_index or (_rebuilt_index(ex, day, buckets) if base.days else ids.empty_index(buckets))
    root, groups = str(day.plan.gallery), _bucket_groups(index["buckets"])
    bucketed = [ex.submit("id-buckets", ingest.bucket_ids, p, index["buckets"]) for p in parts]
    found = [
        ex.submit(
            "duplicates",
            _group_duplicates,
            [ex.submit("bucket", _select, b, g) for b in bucketed],
            root,
            index["runs"],
            g,
        )
        for g in groups
    ]
    dups = [ex.pick("bucket", f, 0) for f in found]
    new_ids = [ex.pick("bucket", f, 1) for f in found]
    dropped = [ex.submit("dedupe", ingest.drop_rows, p, dups, day.cfg.ingest) for p in parts]
    return dropped, new_ids, index, groups


def _reason_counts(part: ingest.Part) -> Counter:
    return Counter() if part.bad is None else Counter(part.bad.column("reason").to_pylist())


def ingest_day(ex, day: Day) -> Ingested:
    """Every partition read and validated on the workers; refuses a day with too many bad rows."""
    parts = ex.wait(
        "ingest",
        [ex.submit("ingest", ingest.ingest_partition, s, day.dim, day.cfg.ingest) for s in day.plan.partitions],
    )
    parts, new_ids, index, groups = _dedupe(ex, day, parts)
    parts = ex.wait("dedupe", parts)
    counts = ex.gather([ex.submit("count", ingest.count_rows, p) for p in parts])
    n_ok, n_bad = sum(c[0] for c in counts), sum(c[1] for c in counts)
    reasons = sum(ex.gather([ex.submit("reasons", _reason_counts, p) for p in parts]), Counter())
    limit = day.cfg.ingest.max_bad_fraction
    if n_ok == 0 or n_bad > limit * (n_ok + n_bad):
        raise InputError(
            f"{n_bad} of {n_ok + n_bad} rows of {day.plan.files[0].parent} are bad (more than "
            f"ingest.max_bad_fraction={limit}); reasons: {dict(reasons.most_common(5))}"
        )
    return Ingested(parts, n_ok + n_bad, n_ok, n_bad, dict(reasons.most_common()), new_ids, index, groups)


def _centre_mean(ex, day: Day, parts: list) -> tuple[object, object]:
    """The gallery's centring mean and, on its first day, the one learned today: ``(mean, new_mean)``."""
    stored, cfg = day.plan.base.preprocess, day.cfg
    if stored and stored.get("centre"):
        if not cfg.preprocess.centre:
            log.warning("the gallery centres features (fixed by its first day): preprocess.centre=false is ignored")
        return ex.submit("centre-load", load_npy, day.path(stored["centre"])), None
    if not cfg.preprocess.centre:
        return None, None
    if day.plan.base.days:
        raise GalleryError(
            "preprocess.centre is fixed by the gallery's first day, which was not centred; "
            "start a new gallery to centre features"
        )
    sums = [ex.submit("centre-sum", prepare.unit_sum, p) for p in parts]
    mean = ex.submit("centre-mean", prepare.mean_feature, sums)
    return mean, mean


def _count_low(part: ingest.Part) -> int:
    return int(part.low_quality.sum())


def prepare_day(ex, day: Day, ingested: Ingested) -> Prepared:
    """Centring and quality flags (see :mod:`daskcluster.stages.prepare`)."""
    mean, new_mean = _centre_mean(ex, day, ingested.parts)
    if mean is None and day.cfg.quality.floor <= 0:
        return Prepared(ingested.parts, 0)
    parts = ex.wait(
        "prepare", [ex.submit("prepare", prepare.prepare, p, mean, day.cfg.quality) for p in ingested.parts]
    )
    return Prepared(parts, sum(ex.gather([ex.submit("count", _count_low, p) for p in parts])), new_mean)


def _write_group(root: str, run: str, new: dict) -> int:
    """The ``write-ids`` task of a group of buckets: each bucket's new ids into the day's run."""
    return sum(ids.write_bucket(root, run, j, ids_j) for j, ids_j in new.items())


def _merge_after(written: int, root: str, sources: list[dict], target: dict, group: range) -> int:
    """The ``ids-merge`` task of a group of buckets, after the group's own run is written (``written``)."""
    return sum(ids.merge_bucket(root, sources, target, j) for j in group)


def write_ids(ex, day: Day, ingested: Ingested) -> dict:
    """The day's new face ids written as a level-0 run of the face-id index, one ``write-ids`` task per group,
    then the LSM merges due (``ids-merge``); returns the index record the day commits."""
    root, run = str(day.plan.gallery), day.plan.outputs.ids
    written = [ex.submit("write-ids", _write_group, root, run, new) for new in ingested.new_ids]
    n_ids = sum(ex.gather(ex.wait("write", written)))
    index = ids.add_run(ingested.id_index, {"path": run, "level": 0, "ids": n_ids})
    merges = ids.merge_plan(index, day.plan.version)
    for sources, target in merges:
        written = [
            ex.submit("ids-merge", _merge_after, w, root, sources, target, g)
            for w, g in zip(written, ingested.id_groups)
        ]
        ex.wait("write", written)
    return ids.apply_merges(index, merges)
