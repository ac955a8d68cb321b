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

(b) **Cost model** of the delta-gallery design. From the 1-worker run: the compute seconds of every task,
grouped by task name (``dask.utils.key_split`` of its key; the stage of a name is read from
``daskcluster.run.tasks``); from the 2-worker run: the bytes every worker received
(``Worker.transfer_incoming_log``, attributed to the task that needed them by matching the task stream's
``transfer`` start/stop, and counted on the wire by the sender's ``transfer_outgoing_log``: Dask's own ``sizeof``
estimate counts a pipeline ``Part`` as 56 bytes); the scheduler's throughput (tasks/s) from a probe of
``--probe-tasks`` trivial tasks submitted like the pipeline submits (one ``client.submit`` per task, half of them
picking from the other half); each worker's memory rates from a probe (bytes/s of a 64 MB table copied into a
random row order; random 8-byte reads/s of a 128 MB array). Measured names the design renames are folded into
theirs (``duplicates`` -> ``id-lookup``, ``new-centres`` -> ``centre-sums``); names a production day does not
run are dropped (``gallery-ids``, the whole-snapshot ``write-shard``, ``id-rebuild``). Each name's compute and
bytes are scaled from the measured day to a ``--scale-faces`` day against a ``--scale-clusters`` gallery by what
they are proportional to; a name the measured run does not have is costed at the per-unit rate of a measured
name doing the same work (``write-delta``, ``compact-write``: ``write-shard`` per row; ``compact-load``:
``load-shard`` per row; ``sums-reduce``: ``centre-sums`` per face; ``write-ids``, ``ids-merge``: ``id-buckets``
per id), else at a machine rate (dot products at the measured ``assign-search``'s rate, rows given their nearest
IVF list at ``assign-probe``'s, copies and random reads at the memory probe's):

================  ==========================================================  =================  ==============
stage             compute (and store bytes) scale with                        tasks              bytes moved
================  ==========================================================  =================  ==============
ingest            faces F                                                     P                  F
dedupe            ``id-buckets``, ``dedupe`` F; ``bucket`` picks;             P; P x B + 2 B; B  F
                  ``id-lookup`` F x R x k Bloom reads (R LSM runs, k
                  hashes) + the hit row groups decoded; reads every run's
                  filter (H x b/8 bytes, H = history ids) and those row
                  groups
prepare           F (centring, quality flags)                                 P                  F
load-shard        C (1 + f/2) rows: the base and the deltas (reads them)      S_g                -
assign            ``gallery-index``: a copy of C rows into list order (the    S_g; P; P x W_g;   F x W_g
                  list ids are stored); ``assign-probe`` F x nlist dots;      P x tree(W_g)
                  ``assign-search`` F x C x nprobe/nlist dots; merge F W_g
knn-train         12 x min(n_train, 256 nlist_k) x nlist_k dots               1 (serial)         n_train
knn-build         U x nlist_k dots (U = u F unassigned)                       S_k                F
edges             ``knn-probe`` U x nlist_k, ``knn-search`` U x U x           P; P x W_k;        U x W_k
                  nprobe_k/nlist_k dots; merge, ``annotate`` U x W_k          P x tree(W_k)
components        cc-forest: edges E = e U; cc-merge: a tree of fan-in 8      P; tree; 1         V
                  over the P forests; components: V = U, ONE task
centre-update     ``centre-sums`` F; ``sums`` picks; ``sums-reduce`` F per    P; P x W_g;        F
                  tree level; ``centre-update`` the whole shard (C, as        W_g x tree(P);
                  ``update_shard`` copies it) + D x nlist dots (the changed   S_g
                  and new clusters' lists)
write             ``write-delta`` D rows; ``write-assignments`` F;            S_g; P; B;         -
                  ``write-ids`` F ids + filter; ``ids-merge`` F x log8(H_d)   B x sum 8^-l
                  ids (amortised)
compact           ``compact-load`` reads C (1 + f), ``compact-write`` writes  S_g / n_c          -
                  C rows, once every n_c = f C / D days (amortised)
scheduling        tasks / measured (or ``--scheduler-tasks-per-s``) tasks/s   the scheduler      -
================  ==========================================================  =================  ==============

The gallery is a base plus per-shard deltas: a day writes D = c A + N rows (A = F - U assigned faces, c =
``--scale-changed-fraction`` distinct clusters changed per assigned face, 1 = the bound; N new clusters at the
measured rate per face) of ``4 d + 30`` bytes. Compaction rewrites the base (C rows) whenever the deltas reach
f C rows (f = ``--compact-fraction``), i.e. every n_c = f C / D days, so it adds C / n_c = D / f rows a day
amortised: the centre rows written per day are D (1 + 1/f). A day reads the base and on average the half of
f C delta rows (C (1 + f/2)). The face-id index has B buckets (``--scale-id-buckets``) and LSM runs (fan-out
8) whose count R after H_d = ``--scale-history-days`` days is the sum of H_d's base-8 digits; a day probes
each run's Bloom filter of b = ``--bloom-bits`` bits per id (reads H x b/8 bytes, H = F H_d: it grows with the
history, spread over min(W, B) tasks), and reads the row groups (65536 ids) its false positives (rate (1 -
e^(-k/b))^k, k = round(b ln 2)) fall in: at 100M ids a day these are most row groups of every run, ~H x 8
bytes; it writes F x (8 + b/8) bytes and its merges rewrite each id log8(H_d) times (amortised). The quantizer
is re-trained when the gallery has grown ~4x (every ~3 C / N days): not in the daily total; its row is the
training, C x nlist dots re-listing every cluster and a base rewrite.

u (unassigned fraction), e (edges per vertex) and new clusters per face are the measured ones. At scale the
gallery index is IVF ``--scale-nlist`` lists with ``--scale-nprobe`` probed, the k-NN index what
``choose_index`` picks for U (unless ``--scale-knn-nlist``/``--scale-knn-nprobe``), S_g = W
(``--scale-shards``), W_g = min(W, S_g) and W_k = min(W, S_k) the workers holding gallery and k-NN shards
(S_k = U d 4 / ``search.shard_mb``, as the code groups partitions, unless ``--scale-knn-shards``); P follows
``--scale-partition-mb`` (default 1024 MB of features on a GPU-class worker, i.e. a speed-up > 1, the config's
64 MB at x1). Compute seconds are divided by ``--worker-speedup`` (a production worker's speed relative to the
measured one, memory and hashing included) and spread over the workers that can run them (W_g or W_k for
tasks that run where shards live, min(W, B) for the id buckets, min(W, tasks) otherwise; serial tasks: 1; the
cc-merge tree level by level). Store bytes take bytes / (those workers x ``--storage-gbps``), overlapping the
compute (a task takes the longer). Network bytes of a task scale with its input's unit and with how many
workers need each input: the query partitions of ``assign-search`` and ``knn-search`` go to every worker holding
shards (min(W, S) x (W-1)/W copies of F or U faces, at the measured bytes per face of a partition on the wire),
the rest (W-1)/W; time = bytes / (its workers x ``--net-gbps``), or bytes / ``--net-gbps`` where one task
receives them. A stage takes max(its tasks' compute or store, then network, its tasks / scheduler throughput):
the scheduler hands out tasks while workers compute. The dot rate is assumed constant, although at scale IVF
lists split over many shards get short (at 1B clusters, 262144 lists and 100 shards: ~38 rows per list per
shard), which makes blocked products less efficient, so the projection is optimistic there. Not modelled: the
driver's summary (label metrics read every face of the day and of the history, only for labelled input), the
vacuum of old versions, stragglers. The projection is printed for ``--scale-workers`` (8, 32, 100) and each
``--worker-speedup``, with the efficiency ``8 T8 / (W T_W)``, the tasks, and the bytes written, read and moved
per day; the parameters are printed with it (and are in the ``model`` record).

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
