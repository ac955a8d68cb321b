"""Run a day on an MPI allocation (HPC) through dask-mpi.

    mpirun -n N python -m daskcluster.mpi [MPI OPTIONS] run-day --input DAY --gallery DIR [run-day options]

Rank 0 runs the Dask scheduler, rank 1 runs the day (the ``daskcluster run-day`` command itself, pointed at
that scheduler), ranks 2..N-1 are Dask workers: N ranks give N - 2 workers. On GPU nodes start one rank per GPU
with ``--worker-class dask_cuda.CUDAWorker``. The MPI OPTIONS come before ``run-day``; everything after it is
passed to ``daskcluster run-day`` unchanged, except ``--scheduler`` and ``--workers``, which MPI decides.
"""

from __future__ import annotations

import logging

import click
import yaml

from daskcluster import cli

log = logging.getLogger(__name__)

COMMANDS = ("run-day", "demo")
OWNED_BY_MPI = ("--scheduler", "--workers")


def parse_worker_options(items: tuple[str, ...]) -> dict:
    """``("rmm_pool_size=40GB", "death_timeout=60")`` -> keyword arguments for the worker class (YAML values)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--worker-option")
        options[key.strip()] = yaml.safe_load(value)
    return options


def check_day_args(args: tuple[str, ...]) -> None:
    """The scheduler and the workers come from MPI: refuse options that would choose others."""
    for arg in args:
        if arg.split("=", 1)[0] in OWNED_BY_MPI:
            raise click.UsageError(
                f"{arg.split('=', 1)[0]} is set by MPI (rank 0 is the scheduler, ranks >= 2 are the workers); remove it"
            )


def quiet_cluster_logs(verbose: int) -> None:
    """Scheduler and worker ranks log at ERROR (as the local cluster does) unless -v: their shutdown is noisy."""
    import distributed  # noqa: F401  (distributed sets its log levels when imported: override after that)

    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.ERROR)


def run_client(command: str, args: tuple[str, ...], verbose: int) -> None:
    """On rank 1: run the ``daskcluster`` command against the MPI cluster's scheduler, then shut the cluster down."""
    import dask
    from dask_mpi import send_close_signal

    address = dask.config.get("scheduler_address")
    log.info("MPI Dask cluster: scheduler %s", address)
    argv = [*(["-v"] * verbose), command, *args, "--scheduler", address]
    try:
        cli.main(args=argv, prog_name="python -m daskcluster.mpi")  # always raises SystemExit
    finally:
        send_close_signal()


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--worker-class",
    default="distributed.Worker",
    show_default=True,
    help="Worker class of ranks >= 2, e.g. dask_cuda.CUDAWorker on GPU nodes (one rank per GPU).",
)
@click.option(
    "--worker-option",
    "worker_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for the worker class, e.g. rmm_pool_size=40GB (repeatable).",
)
@click.option("--nthreads", default=1, show_default=True, help="Threads per worker rank.")
@click.option(
    "--memory-limit",
    default="auto",
    show_default=True,
    help="Memory per worker rank (bytes, '8GiB' or 'auto'); set it when ranks share a node.",
)
@click.option("--local-directory", type=click.Path(file_okay=False), help="Worker scratch directory.")
@click.option("--interface", help="Network interface for the cluster, e.g. ib0.")
@click.option("--protocol", help="Comm protocol, e.g. tcp or ucx.")
@click.option("--dashboard-address", default=":8787", show_default=True, help="Scheduler dashboard (rank 0).")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True)
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug).")
@click.argument("command", type=click.Choice(COMMANDS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def main(
    worker_class,
    worker_options,
    nthreads,
    memory_limit,
    local_directory,
    interface,
    protocol,
    dashboard_address,
    dashboard,
    verbose,
    command,
    args,
) -> None:
    """Run a daskcluster command on a Dask cluster made of this job's MPI ranks (at least 3)."""
    check_day_args(args)
    if "--help" in args:
        cli.main(args=[command, "--help"], prog_name="python -m daskcluster.mpi")
    from dask_mpi import initialize

    quiet_cluster_logs(verbose)
    is_client = initialize(
        interface=interface,
        nthreads=nthreads,
        local_directory=local_directory,
        memory_limit=memory_limit,
        dashboard=dashboard,
        dashboard_address=dashboard_address,
        protocol=protocol,
        worker_class=worker_class,
        worker_options=parse_worker_options(worker_options),
        exit=False,
    )
    if is_client:
        run_client(command, args, verbose)
