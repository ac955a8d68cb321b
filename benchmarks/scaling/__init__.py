"""Strong scaling of one day on this machine, a cost model projected to production scale, and peak memory
per process and stage.

(a) **Measured strong scaling.** The same synthetic day of ``--n`` faces (``daskcluster.eval.synth``, d=``--dim``)
is run by ``daskcluster.run.pipeline.run_day`` against a fresh copy of the same starting gallery of
``--gallery-clusters`` clusters, once on ``LocalCluster(n_workers=1, threads_per_worker=1)`` and once on
``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes; faiss is given one OpenMP thread per
worker, so each worker computes on one core). The starting gallery is written directly in the gallery format
(``daskcluster.stages.centres.write_shard`` tables, a ``Manifest`` with one synthetic ``DayRecord`` whose
assignments directory is empty): the identity centres of the day's ``SynthSpec`` population
(``synth.identity_centres``: so most faces are assigned, as in production) plus random unit centres up to the
cluster count; cluster ``i`` lives in shard ``i % --shards``, with count ``--cluster-count`` and mean = its
centre. It has no stored IVF quantizer, so the day trains one (``assign-train``, as on the first day after the
gallery has grown ~4x). Per stage (the pipeline's ``stage_seconds``, which time the driver's wait for each stage)
the wall times ``T1``, ``T2`` and the efficiency ``T1 / (2 T2)`` are reported, with the compute seconds the tasks
of the stage spent (Dask task stream). On a 2-core machine the second worker shares the cores with the scheduler
and the driver, so 1.0 is out of reach where they are busy.

(b) **Cost model.** From the 1-worker run: the compute seconds of every task, grouped by task name
(``dask.utils.key_split`` of its key; the stage of a name is read from ``daskcluster.run.tasks``); from the
2-worker run: the bytes every worker received (``Worker.transfer_incoming_log``, attributed to the task that
needed them by matching the task stream's ``transfer`` start/stop, and counted on the wire by the sender's
``transfer_outgoing_log``: Dask's own ``sizeof`` estimate counts a pipeline ``Part`` as 56 bytes); the scheduler's
throughput (tasks/s) from a probe of ``--probe-tasks`` trivial tasks submitted like the pipeline submits (one
``client.submit`` per task, half of them picking from the other half). Each prefix's compute and bytes are scaled
from the measured day to a ``--scale-faces`` day against a ``--scale-clusters`` gallery by what they are
proportional to:

================  ==========================================================  =================  ==============
stage             compute scales with                                         runs in parallel   bytes moved
================  ==========================================================  =================  ==============
ingest, dedupe    faces F (``duplicates``: F, at most 16 tasks)               P partitions       F
prepare           faces F (centring, quality flags)                           P partitions       F
load-shard        clusters C (the whole snapshot is read)                     S_g shards         -
assign-train      k-means: 12 x min(n_train, 256 nlist) x nlist dots          1 task (serial)    n_train
assign            F x (C x nprobe/nlist + nlist x S_g) dot products:          P x min(W, S_g)    F x fan-out
                  the lists probed plus the coarse quantizer, which every
                  shard runs again; index build C x nlist dots
knn-train         as assign-train, on the unassigned faces U = u F            1 task (serial)    n_train
knn-build         U x nlist_k dots (rows to their lists)                      S_k graph shards   F (whole parts)
edges             knn-search U x (U x nprobe_k/nlist_k + nlist_k x S_k)       P x min(W, S_k)    F x fan-out
                  dots; merge U x min(W, S_k); edges U
components        cc-forest: edges E = e U; cc-merge: a tree of fan-in 8      P; tree; 1         V
                  over the P forests, each level ~V vertices, depth
                  ceil(log8 P); components: vertices V = U, ONE task
centre-update     sums F (2 P S_g pick tasks); update: the WHOLE shard        P; S_g             F
                  (``update_shard`` copies every centre to float64), so C
write             snapshot C (rewritten whole each day); assignments F        S_g; P             -
scheduling        tasks / measured tasks/s (tasks grow as P x min(W, S))      the scheduler      -
================  ==========================================================  =================  ==============

``consolidate`` (a maintenance job, not the day's) is not projected. u (unassigned fraction) and e (edges per
vertex) are the measured ones. At scale the gallery index is IVF ``--scale-nlist`` lists with ``--scale-nprobe``
probed, the k-NN index what ``choose_index`` picks for U (unless ``--scale-knn-nlist``/``--scale-knn-nprobe``),
S_g = W (``gallery.shards`` 0: one per worker; ``--scale-shards``), P and S_k follow ``ingest.partition_mb`` and
``search.shard_mb``. Compute seconds are divided by ``--worker-speedup`` (a production worker's speed relative to
the measured one) and spread over min(W, tasks) workers (serial tasks: 1; the cc-merge tree level by level). Dot
products (d-dim inner products) absent at the measured size (an index that was flat there, e.g. k-NN training) are
costed at the rate the measured ``assign-search`` achieved; all others scale from their own measured seconds.
Bytes of a task scale with its input's unit and with how many workers need each input: min(W, S) x (W-1)/W for
inputs every shard of S needs (the query partitions of ``assign-search`` and ``knn-search``, sized by the measured
bytes per face of a partition on the wire; the component labels), (W-1)/W for the rest; time = bytes / (min(W,
tasks) x ``--net-gbps``), or bytes / ``--net-gbps`` where one task receives them. A stage takes max(compute +
network, its tasks / scheduler throughput): the scheduler hands out tasks while workers compute. The dot rate is
assumed constant, although at scale IVF lists split over many shards get short (at 1B clusters, 262144 lists and
100 shards: ~38 rows per list per shard), which makes blocked products less efficient, so the projection is
optimistic there. Not modelled: ``gallery-ids`` (reading every committed day's face ids for the duplicate check
grows with the gallery's history; the synthetic gallery has none), the driver's summary (label metrics read every
face of the day and of the history, only for labelled input) and stragglers. The projection is printed for
``--scale-workers`` (8, 32, 100) and each ``--worker-speedup``, with the efficiency ``8 T8 / (W T_W)``.

(c) **Memory.** A ``WorkerPlugin`` samples every worker's RSS and CPU time (psutil) every
``--sample-period`` s; the same sampler runs in the scheduler (``run_on_scheduler``) and in the driver, which
also samples the machine's busy CPU time (to show what other processes took). On a ``LocalCluster`` the
scheduler runs in the driver's process: it is reported once, as ``driver+scheduler``. Samples are
attributed to the stage the driver was waiting for (a ``NullProgress`` subclass passed as ``progress=``
records each stage's interval); ``(between stages)`` are the driver's gathers between stages,
``(summary+commit)`` is after the last stage. Each process's peak is reported per stage, and for a second day
of ``--n / 4`` faces (2 workers, same gallery) next to the ``--n`` day, with their vertex (unassigned faces)
and edge counts: no process's peak should grow faster than the vertices.

Output: one JSON line per record on stdout (and appended to ``--out FILE.jsonl``), every one with
``"bench": "scaling"`` and a ``kind``: ``run`` (one per pipeline run: stage seconds, counts, per-prefix task
counts, compute seconds and bytes, the scheduler probe), ``scaling`` (one per stage and ``total``: T1, T2,
efficiency), ``model`` (the measured and scaled quantities), ``projection`` (one per workers x speedup:
seconds per stage, total, efficiency vs 8 workers), ``memory`` (one per run x stage: peak RSS per process)
and ``memory_sizes`` (one per process: peaks at n/4 and n). Markdown tables on stderr.
Data and the starting gallery are written under ``--workdir`` and reused when present. ``--project-from
FILE.jsonl`` runs nothing: it recomputes the model and projection (e.g. with other ``--scale-*``,
``--net-gbps`` or ``--worker-speedup``) from the ``run`` records of an earlier run (they keep its ``meta``).

Modules: :mod:`~benchmarks.scaling.data` (the day and the starting gallery), :mod:`~benchmarks.scaling.run`
(one run and its ``run`` record), :mod:`~benchmarks.scaling.model` (the cost model),
:mod:`~benchmarks.scaling.memory` (RSS and CPU sampling), :mod:`~benchmarks.scaling.tables` (the report),
:mod:`~benchmarks.scaling.cli` (options and main).
Example: ``python -m benchmarks.scaling --n 500000 --gallery-clusters 500000 --out /tmp/scaling.jsonl``
"""
