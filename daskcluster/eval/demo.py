"""The demo behind a bare ``make run-day``: a labelled synthetic data set generated once, then the next
day of it that the gallery has not committed yet."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from daskcluster.eval.synth import SynthSpec, write_dataset
from daskcluster.gallery.manifest import read_manifest
from daskcluster.stages.inputs import infer_day

log = logging.getLogger(__name__)

DEMO_SPEC = SynthSpec(days=5, faces_per_day=20_000, identities=4_000, dim=256, seed=2026)


def ensure_demo_data(data_dir: str | Path, spec: SynthSpec = DEMO_SPEC) -> list[Path]:
    """The demo day directories, generating them first if absent (written aside, then renamed)."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        tmp = data_dir.with_name(f".{data_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the demo data set in %s", data_dir)
        write_dataset(spec, tmp)
        tmp.rename(data_dir)
    return sorted(p for p in data_dir.glob("day=*") if p.is_dir())


def next_demo_day(data_dir: str | Path, gallery: str | Path) -> Path | None:
    """The first demo day directory not committed to ``gallery`` (None when all are)."""
    manifest = read_manifest(gallery)
    done = {d.day for d in manifest.days} if manifest else set()
    return next((p for p in ensure_demo_data(data_dir) if infer_day(p) not in done), None)
