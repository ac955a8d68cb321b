"""The ``daskcluster`` command: parses, loads config, sets up logging and calls one library function."""

from __future__ import annotations

import contextlib
import json
import logging
import sys

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from daskcluster.config import ConfigError, load_config
from daskcluster.gallery.manifest import GalleryError
from daskcluster.stages.inputs import InputError

console = Console(stderr=True)
log = logging.getLogger("daskcluster")

CONFIG_OPTION = click.option(
    "--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML config file."
)
SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config key, e.g. --set assign.threshold=0.6 (repeatable).",
)
GALLERY_OPTION = click.option(
    "--gallery", required=True, type=click.Path(file_okay=False), help="Gallery directory, or URL (s3://bucket/g)."
)


class RichStageProgress:
    """One progress bar per stage, with its time when done."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def start(self, stage: str, total: int) -> None:
        self.tasks[stage] = self.progress.add_task(stage, total=total)

    def advance(self, stage: str) -> None:
        self.progress.advance(self.tasks[stage])

    def finish(self, stage: str, seconds: float) -> None:
        self.progress.update(self.tasks[stage], description=f"{stage} ({seconds:.1f} s)")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    logging.getLogger("daskcluster").setLevel(level)


def _quiet_dask() -> None:
    """distributed sets its own log levels when imported: turn them down after that."""
    import distributed  # noqa: F401

    if log.getEffectiveLevel() > logging.DEBUG:
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _fail(exc: Exception) -> None:
    """One line on stderr (no markup read from the message, no wrapping), exit 2."""
    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    sys.exit(2)


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug).")
def main(verbose: int) -> None:
    """Cluster face feature vectors by identity, one day at a time, into a durable gallery."""
    _setup_logging(verbose)


@contextlib.contextmanager
def _cluster(cfg, scheduler, workers):
    """A client of the local cluster (or of ``--scheduler``) and per-stage progress bars."""
    from daskcluster.backends import resolve_backend_name
    from daskcluster.deploy.connect import connect

    _quiet_dask()
    with connect(cfg.dask, scheduler, workers, resolve_backend_name(cfg.backend)) as client:
        console.print(f"Dask dashboard: [link]{client.dashboard_link}[/]")
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bars:
            yield client, RichStageProgress(bars)


def _job_config(config_file, overrides):
    """The config of a job that computes, its backend checked before any work: ``backend: gpu`` on a machine
    without a usable GPU is refused here (exit 2), before a cluster starts or a file is written."""
    from daskcluster.backends import resolve_backend_name

    cfg = load_config(config_file, overrides)
    resolve_backend_name(cfg.backend)
    return cfg


def _run_day(input_path, gallery, day, config_file, overrides, workers, scheduler, force, cfg=None) -> None:
    from daskcluster.cli.display import print_summary
    from daskcluster.run.consolidate import consolidate_after_day
    from daskcluster.run.pipeline import run_day

    try:
        cfg = cfg or _job_config(config_file, overrides)
        with _cluster(cfg, scheduler, workers) as (client, progress):
            result = run_day(client, input_path, gallery, cfg, day, force, progress)
            if cfg.consolidate.after_day and result.status == "committed":
                result.summary["consolidate"] = consolidate_after_day(client, gallery, cfg, progress)
    except (ConfigError, InputError, GalleryError) as exc:
        _fail(exc)
    print_summary(console, result)


WORKERS_OPTION = click.option("--workers", type=int, help="Local Dask workers (default: fit the machine).")
SCHEDULER_OPTION = click.option("--scheduler", help="Address of an existing Dask scheduler.")


@main.command("run-day")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="Parquet file or directory, or their URL (s3://...).",
)
@GALLERY_OPTION
@click.option("--day", help="YYYY-MM-DD (default: from a day=YYYY-MM-DD input path).")
@CONFIG_OPTION
@SET_OPTION
@WORKERS_OPTION
@SCHEDULER_OPTION
@click.option("--force", is_flag=True, help="Recompute a committed (or earlier) day.")
def run_day_cmd(input_path, gallery, day, config_file, overrides, workers, scheduler, force) -> None:
    """Run one day: assign to the gallery, cluster the rest, commit."""
    _run_day(input_path, gallery, day, config_file, overrides, workers, scheduler, force)


@main.command()
@click.option("--data", default="data/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--gallery", default="data/gallery", show_default=True, type=click.Path(file_okay=False))
@CONFIG_OPTION
@SET_OPTION
@WORKERS_OPTION
@SCHEDULER_OPTION
def demo(data, gallery, config_file, overrides, workers, scheduler) -> None:
    """Generate the labelled demo data once, then run its next uncommitted day."""
    from daskcluster.eval.demo import next_demo_day

    try:
        cfg = _job_config(config_file, overrides)
    except ConfigError as exc:
        _fail(exc)
    day_dir = next_demo_day(data, gallery)
    if day_dir is None:
        console.print(f"every demo day in {data} is committed to {gallery}; remove {gallery} to start over")
        return
    console.print(f"demo day: {day_dir}")
    _run_day(str(day_dir), gallery, None, config_file, overrides, workers, scheduler, False, cfg)


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--days", default=3, show_default=True)
@click.option("--faces-per-day", default=10_000, show_default=True)
@click.option("--identities", default=2_000, show_default=True)
@click.option("--dim", default=256, show_default=True)
@click.option("--seed", default=0, show_default=True)
def synth(out, days, faces_per_day, identities, dim, seed) -> None:
    """Write a labelled synthetic data set: OUT/day=YYYY-MM-DD/*.parquet."""
    from daskcluster.eval.synth import SynthSpec, write_dataset

    spec = SynthSpec(days=days, faces_per_day=faces_per_day, identities=identities, dim=dim, seed=seed)
    for path in write_dataset(spec, out):
        console.print(str(path))


@main.command()
@GALLERY_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def export(gallery, out) -> None:
    """Write face_id, cluster_id of every face in the gallery."""
    from daskcluster.gallery.queries import export_assignments

    try:
        n = export_assignments(gallery, out)
    except GalleryError as exc:
        _fail(exc)
    console.print(f"{n} faces written to {out}")


@main.command("eval")
@GALLERY_OPTION
@click.option(
    "--labels",
    required=True,
    multiple=True,
    type=click.Path(exists=True),
    help="Parquet files or day directories with face_id and label (repeatable; extra args too).",
)
@click.argument("more_labels", nargs=-1, type=click.Path(exists=True))
def eval_cmd(gallery, labels, more_labels) -> None:
    """Print clustering metrics of the gallery against labels, as one JSON object."""
    from daskcluster.gallery.queries import evaluate_gallery

    try:
        result = evaluate_gallery(gallery, [*labels, *more_labels])
    except (GalleryError, InputError) as exc:
        _fail(exc)
    click.echo(json.dumps(result))


@main.command()
@GALLERY_OPTION
def status(gallery) -> None:
    """Days committed, clusters, faces and cluster sizes."""
    from daskcluster.cli.display import print_status
    from daskcluster.gallery.queries import gallery_status

    try:
        print_status(Console(), gallery_status(gallery))
    except GalleryError as exc:
        _fail(exc)


@main.command()
@GALLERY_OPTION
@CONFIG_OPTION
@SET_OPTION
def retrain(gallery, config_file, overrides) -> None:
    """Re-train the gallery's shared IVF quantizer now (it is otherwise re-trained as the gallery grows)."""
    from daskcluster.run.maintenance import retrain_quantizer

    try:
        result = retrain_quantizer(gallery, _job_config(config_file, overrides))
    except (ConfigError, GalleryError) as exc:
        _fail(exc)
    console.print(
        f"quantizer {result['path']} ({result['nlist']} lists, {result['clusters']} clusters) "
        f"committed as version {result['version']}"
    )


def cluster_job_options(f):
    """The options of a gallery job on a Dask cluster: --gallery, --config, --set, --workers, --scheduler."""
    for option in (SCHEDULER_OPTION, WORKERS_OPTION, SET_OPTION, CONFIG_OPTION, GALLERY_OPTION):
        f = option(f)
    return f


@main.command()
@cluster_job_options
def compact(gallery, config_file, overrides, workers, scheduler) -> None:
    """Fold the gallery's deltas into a new base, committed as a new version (run-day also does it by the
    gallery.compact_fraction rule)."""
    from daskcluster.run.compact import compact_gallery

    try:
        cfg = _job_config(config_file, overrides)
        with _cluster(cfg, scheduler, workers) as (client, progress):
            result = compact_gallery(client, gallery, cfg, progress)
    except (ConfigError, GalleryError) as exc:
        _fail(exc)
    console.print(
        f"{result['deltas_folded']} deltas folded into {result['snapshot']} ({result['clusters']} clusters), "
        f"committed as version {result['version']}"
    )


@main.command()
@GALLERY_OPTION
@CONFIG_OPTION
@SET_OPTION
@click.option("--keep", type=click.IntRange(min=1), help="States to keep (default: gallery.keep_versions).")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def vacuum(gallery, config_file, overrides, keep, dry_run) -> None:
    """Delete what no retained gallery state points to: old bases and deltas, quantizers, lineage, id-index
    runs, and the outputs of versions no longer committed."""
    from daskcluster.cli.display import _bytes
    from daskcluster.gallery.manifest import read_manifest
    from daskcluster.gallery.retention import vacuum as run_vacuum

    try:
        cfg = load_config(config_file, overrides)
        manifest = read_manifest(gallery)
        if manifest is None:
            raise GalleryError(f"{gallery} is not a gallery (no manifest.json)")
        result = run_vacuum(gallery, manifest, keep or cfg.gallery.keep_versions, dry_run)
    except (ConfigError, GalleryError) as exc:
        _fail(exc)
    for rel in result.removed:
        console.print(("would remove " if dry_run else "removed ") + rel)
    verb, kept = ("would free" if dry_run else "freed"), ", ".join(result.kept_days)
    console.print(f"{len(result.removed)} entries, {verb} {_bytes(result.bytes_freed)}; kept the states after {kept}")


@main.command("rebuild-ids")
@GALLERY_OPTION
def rebuild_ids(gallery) -> None:
    """Rebuild the face-id index (duplicate check) from the committed assignments, as a new version."""
    from daskcluster.run.maintenance import rebuild_id_index

    try:
        result = rebuild_id_index(gallery)
    except GalleryError as exc:
        _fail(exc)
    console.print(f"face-id index of {result['ids']} ids rebuilt, committed as version {result['version']}")


@main.command()
@cluster_job_options
@click.option(
    "--rounds",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Merge rounds; each merges mutual-best pairs of the clusters the last one left.",
)
def consolidate(gallery, config_file, overrides, workers, scheduler, rounds) -> None:
    """Merge gallery clusters that are one person split across days; commit them as a new version."""
    from daskcluster.run.consolidate import consolidate_gallery

    try:
        cfg = _job_config(config_file, overrides)
        with _cluster(cfg, scheduler, workers) as (client, progress):
            result = consolidate_gallery(client, gallery, cfg, progress, rounds)
    except (ConfigError, GalleryError) as exc:
        _fail(exc)
    console.print(result.message)


@main.command()
@click.option(
    "--probe",
    required=True,
    type=click.Path(exists=True),
    help="Labelled faces (face_id, feature, label; optionally quality): a Parquet file or directory.",
)
@click.option(
    "--day-input",
    type=click.Path(exists=True),
    help="A day's unlabelled faces, mixed in as distractors (scored on the probe only).",
)
@click.option("--max-distractors", default=200_000, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--target-precision",
    required=True,
    type=click.FloatRange(0.0, 1.0),
    help="Lowest acceptable B-cubed precision on the probe.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Config file to write.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), help="Precision-recall plot (PNG); default: OUT with .png."
)
@click.option("--label-column", default="label", show_default=True)
@CONFIG_OPTION
@SET_OPTION
def calibrate(
    probe, day_input, max_distractors, target_precision, out, plot_path, label_column, config_file, overrides
) -> None:
    """Choose thresholds and guards on a labelled probe; write them as a config file for --config."""
    from pathlib import Path

    from daskcluster.cli.display import print_calibration
    from daskcluster.eval.calibrate import CalibrationError, load_probe, plot, write_config
    from daskcluster.eval.calibrate import calibrate as run_calibration

    try:
        base = load_config(config_file, overrides)
        data = load_probe(probe, base, label_column, day_input, max_distractors)
        console.print(f"probe: {data.n_probe} labelled faces, {data.n_distractors} distractors")
        result = run_calibration(data, base, target_precision)
    except (ConfigError, InputError, CalibrationError) as exc:
        _fail(exc)
    write_config(result, out, str(probe))
    png = plot_path or str(Path(out).with_suffix(".png"))
    plot(result, png)
    print_calibration(Console(width=max(Console().width, 150)), result)
    console.print(f"wrote {out} and {png}")


@main.command("show-config")
@CONFIG_OPTION
@SET_OPTION
def show_config(config_file, overrides) -> None:
    """Print the resolved configuration as YAML."""
    import yaml

    try:
        cfg = load_config(config_file, overrides)
    except ConfigError as exc:
        _fail(exc)
    click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
