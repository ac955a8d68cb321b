"""Step 0 of a day on the executor: read, validate and partition the input, drop duplicates within the day and
against the gallery, then centre features and flag low-quality faces."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from daskcluster.gallery.manifest import GalleryError, assignment_files, load_npy, read_face_ids
from daskcluster.run.day import Day
from daskcluster.stages import ingest, prepare
from daskcluster.stages.inputs import InputError, length_histogram, modal_length

log = logging.getLogger(__name__)

__all__ = ["Ingested", "Prepared", "ingest_day", "prepare_day", "scan_dim"]

DEDUPE_BUCKETS = 16  # most duplicate-finding tasks: ids are bucketed by hash


@dataclass
class Ingested:
    """Per partition, a handle of its valid rows (and its quarantined ones); the day's row counts."""

    parts: list
    faces_in: int
    faces_valid: int
    quarantined: int
    quarantine_reasons: dict[str, int]


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


def _known_buckets(path: str, n_buckets: int) -> list:
    return ingest.bucket_known_ids(read_face_ids(path), n_buckets)


def _dedupe(ex, day: Day, parts: list) -> list:
    """Duplicates within the day and against the gallery, bucketed by id hash across tasks."""
    n_b = max(1, min(len(parts), DEDUPE_BUCKETS))
    buckets = [ex.submit("id-buckets", ingest.bucket_ids, p, n_b) for p in parts]
    files = [str(f) for f in assignment_files(day.plan.gallery, day.plan.base.days)]
    known = [ex.submit("gallery-ids", _known_buckets, f, n_b) for f in files]
    dups = [
        ex.submit(
            "duplicates",
            ingest.find_duplicates,
            [ex.pick("bucket", b, j) for b in buckets],
            [ex.pick("bucket", k, j) for k in known],
        )
        for j in range(n_b)
    ]
    return [ex.submit("dedupe", ingest.drop_rows, p, dups, day.cfg.ingest) for p in parts]


def _reason_counts(part: ingest.Part) -> Counter:
    return Counter() if part.bad is None else Counter(part.bad.column("reason").to_pylist())


def ingest_day(ex, day: Day) -> Ingested:
    """Every partition read and validated on the workers; refuses a day with too many bad rows."""
    parts = ex.wait(
        "ingest",
        [ex.submit("ingest", ingest.ingest_partition, s, day.dim, day.cfg.ingest) for s in day.plan.partitions],
    )
    parts = ex.wait("dedupe", _dedupe(ex, day, parts))
    counts = ex.gather([ex.submit("count", ingest.count_rows, p) for p in parts])
    n_ok, n_bad = sum(c[0] for c in counts), sum(c[1] for c in counts)
    reasons = sum(ex.gather([ex.submit("reasons", _reason_counts, p) for p in parts]), Counter())
    limit = day.cfg.ingest.max_bad_fraction
    if n_ok == 0 or n_bad > limit * (n_ok + n_bad):
        raise InputError(
            f"{n_bad} of {n_ok + n_bad} rows of {day.plan.files[0].parent} are bad (more than "
            f"ingest.max_bad_fraction={limit}); reasons: {dict(reasons.most_common(5))}"
        )
    return Ingested(parts, n_ok + n_bad, n_ok, n_bad, dict(reasons.most_common()))


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
