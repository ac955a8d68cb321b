"""Realistic, labelled, deterministic synthetic face-feature days.

Generative model (all similarities below are cosine similarities of L2-normalised features)
-----------------------------------------------------------------------------------------
Population (fixed per spec, ``identities`` = N people):

* Popularity is Zipf: identity with popularity rank r (a random permutation of 1..N) has weight
  ``r ** -zipf_exponent``; a few identities produce most faces, the long tail one or two a day.
* Arrival: a fraction ``new_identity_rate`` of the population first becomes active on each later day
  (capped at 80 % late in total); the most popular identity is always active from day 0.
* Geometry: identity ``i`` has a unit centre ``c_i`` (isotropic Gaussian direction), 1..``max_pose_modes``
  pose modes ``m`` with offsets ``p_im = a_i * s * bank[j]`` (``a_i`` ~ U(``pose_magnitude``), ``bank`` is
  a shared set of 4096 random unit directions, ``s`` = +-1) used with per-identity Dirichlet frequencies,
  and its own spread ``sigma_i`` ~ U(``noise_sigma``).
* Look-alikes: a fraction ``lookalike_fraction`` of identities get a centre at cosine ``rho`` ~
  U(``lookalike_similarity``) to a "parent" identity (a non-look-alike in the same block of identities).

A face of identity ``i`` (raw, not normalised) is::

    v = c_i + p_im + sigma_f * N(0, I / dim) [+ beta * u  (low quality only)]
    feature = v / |v| * norm,   norm = norm_range[0] + (norm_range[1] - norm_range[0]) * q * exp(N(0, .05^2))

``q`` is a latent quality: Beta(5, 2) for normal faces, Beta(2, 5) for low-quality ones; the ``quality``
column is ``clip(q + N(0, quality_noise^2), 0, 1)``; ``sigma_f = sigma_i * (1 + 0.5 * (0.7 - q))`` for normal
faces and ``sigma_i * lowq_noise_factor`` for the ``lowq_fraction`` of low-quality faces, which also get
``beta * u`` with ``beta`` ~ U(``blur_strength``) and ``u = normalise(b_0 + 0.5 * sum_k g_k b_k)``, ``b_k`` a
few orthonormal "blur" directions shared by everyone (``b_0`` is the common "unrecognisable face" pull).

Resulting statistics (cosine; dim=128, defaults, 5000 faces; checked by tests/eval/test_synth.py):

* same identity, normal faces: median ~0.68 with each identity weighted equally (5-95 %: 0.50-0.79;
  one pose mode ~0.73, across modes ~0.58); ~0.71 when weighted by pairs (popular identities dominate);
* different identities: 0 +- ~1/sqrt(dim) (std 0.087 at dim 128, 0.063 at dim 256);
* look-alike pairs: face-face median ~0.35, face to the other identity's mean direction ~0.39-0.40
  (5-95 %: ~0.2-0.5), i.e. hard but mostly below a 0.55-0.6 threshold;
* low-quality faces of different identities: median ~0.40, 95th percentile ~0.59 (they chain components);
  a low-quality face to a normal face of its own identity ~0.39;
* ``quality`` ~0.71 (normal) vs ~0.28 (low quality); raw norm median ~23.5 (5-95 %: 16-29) vs ~12 (7.5-19).

Each day draws ``faces_per_day`` faces: a multinomial over active identities with weights
``weight_i * Gamma(1/day_jitter^2, day_jitter^2)`` (day-to-day popularity noise). An identity's faces
that day come in visits of ~``faces_per_visit`` faces; a visit has one camera (the identity's home
camera with probability ``camera_home_prob``) and a time-of-day (morning/midday/evening mixture),
faces within a visit are seconds to minutes apart. Rows are shuffled; ``face_id`` is
``day_index * faces_per_day + row``.

Determinism: every random stream is a ``numpy.random.Generator`` seeded by
``SeedSequence([seed, purpose, day, chunk])``; a day never depends on other days, nor on the order
days are generated in. Identity centres are generated per block of identities (4 MiB of float32
each) and kept in a bounded LRU cache, so memory stays bounded for populations up to ~1M identities.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

__all__ = [
    "Population",
    "SynthDay",
    "SynthSpec",
    "day_schema",
    "generate_day",
    "generate_day_arrays",
    "identity_centres",
    "lookalike_pairs",
    "population",
    "write_dataset",
]

CHUNK_ROWS = 65_536  # faces generated per noise chunk (bounds temporary memory)
BLOCK_BYTES = 4 << 20  # identity centres are generated and cached per block of this many bytes
POSE_BANK = 4096  # number of shared random pose-offset directions
MAX_LATE_FRACTION = 0.8
MS_PER_DAY = 86_400_000
# (hour mean, hour std, weight) of the time-of-day mixture of visits
_DAY_PROFILE = ((8.5, 1.2, 0.3), (12.5, 2.5, 0.4), (17.5, 1.5, 0.3))
# purposes of the seed sequences
_P_POP, _P_CENTRE, _P_BANK, _P_BLUR, _P_DAY, _P_NOISE = range(1, 7)


@dataclass(frozen=True)
class SynthSpec:
    """Parameters of a synthetic dataset. Similarities are cosine similarities; ranges are (low, high)."""

    days: int = 3
    faces_per_day: int = 10_000
    identities: int = 2_000  # size of the whole population over all days
    dim: int = 256
    seed: int = 0
    start_date: datetime.date = datetime.date(2026, 1, 1)
    files_per_day: int = 2  # Parquet files per day directory
    zipf_exponent: float = 1.1  # identity popularity (how many faces per identity)
    lookalike_fraction: float = 0.1  # identities created as a near-copy of another identity
    lowq_fraction: float = 0.05  # low-quality faces (blur/occlusion)
    new_identity_rate: float = 0.05  # fraction of the population first appearing on each later day
    noise_sigma: tuple[float, float] = (0.6, 0.85)  # per-identity noise norm (centre has norm 1)
    pose_magnitude: tuple[float, float] = (0.35, 0.6)  # norm of the pose-mode offsets
    max_pose_modes: int = 3
    lookalike_similarity: tuple[float, float] = (0.5, 0.7)  # cosine between look-alike centres
    lowq_noise_factor: float = 1.5  # noise multiplier of low-quality faces
    blur_strength: tuple[float, float] = (1.2, 2.2)  # norm of the shared blur component (low quality)
    blur_directions: int = 3  # shared blur directions (first one is common to all low-quality faces)
    quality_noise: float = 0.1  # std of the noise of the observed quality score
    norm_range: tuple[float, float] = (6.0, 30.0)  # raw feature norm at latent quality 0 and 1
    day_jitter: float = 0.5  # coefficient of variation of an identity's popularity from day to day
    n_cameras: int = 16
    camera_home_prob: float = 0.6  # probability a visit is at the identity's home camera
    faces_per_visit: int = 8  # mean number of faces per visit (a track past one camera)
    nuisance_seed: int | None = None  # seed of the pose-offset bank and blur directions (None: ``seed``); share
    # it between two specs for other people seen by the same cameras and model

    @property
    def nuisance(self) -> int:
        """The seed of the pose-offset bank and blur directions."""
        return self.seed if self.nuisance_seed is None else self.nuisance_seed

    def __post_init__(self) -> None:
        if self.days < 1 or self.faces_per_day < 1 or self.identities < 1 or self.files_per_day < 1:
            raise ValueError("days, faces_per_day, identities and files_per_day must be >= 1")
        if self.dim < 16 or self.seed < 0:
            raise ValueError("dim must be >= 16 and seed >= 0")
        if not 1 <= self.blur_directions <= self.dim // 2 or self.max_pose_modes < 1:
            raise ValueError("need 1 <= blur_directions <= dim/2 and max_pose_modes >= 1")
        for name in ("lookalike_fraction", "lowq_fraction", "new_identity_rate", "camera_home_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    @property
    def block_rows(self) -> int:
        """Identities per centre block."""
        return max(64, BLOCK_BYTES // (4 * self.dim))


@dataclass(frozen=True, eq=False)
class Population:
    """Per-identity parameters of the whole population (arrays of length ``identities``)."""

    weight: np.ndarray  # float64 Zipf popularity weight (unnormalised)
    first_day: np.ndarray  # int32 first day index the identity can appear
    sigma: np.ndarray  # float32 noise norm
    pose_mag: np.ndarray  # float32 pose-offset norm
    mode_cum: np.ndarray  # float32 (N, M) cumulative pose-mode probabilities
    pose_idx: np.ndarray  # int32 (N, M) index into the pose bank
    pose_sign: np.ndarray  # float32 (N, M) +-1
    home_camera: np.ndarray  # int32
    parent: np.ndarray  # int64 look-alike parent identity, -1 if none
    rho: np.ndarray  # float32 cosine between centre and parent centre (0 if none)


@dataclass(frozen=True, eq=False)
class SynthDay:
    """One day as numpy arrays, plus ground truth that is not in the day format (rows are final)."""

    face_id: np.ndarray  # int64
    feature: np.ndarray  # float32 (n, dim), raw (not normalised)
    label: np.ndarray  # int64 identity id
    camera_id: np.ndarray  # int32
    captured_at_ms: np.ndarray  # int64 ms since the Unix epoch
    quality: np.ndarray  # float32 observed quality score in [0, 1]
    lowq: np.ndarray  # bool, ground truth: low-quality face
    pose_mode: np.ndarray  # int8 pose mode index


def _rng(spec_seed: int, *words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([spec_seed, *words])))


_DAY_ONLY = (
    "faces_per_day",
    "files_per_day",
    "start_date",
    "lowq_fraction",
    "lowq_noise_factor",
    "blur_strength",
    "blur_directions",
    "quality_noise",
    "norm_range",
    "day_jitter",
    "camera_home_prob",
    "faces_per_visit",
    "nuisance_seed",
)


def _pop_key(spec: SynthSpec) -> SynthSpec:
    """The spec with the fields that do not affect the population reset (a cache key)."""
    defaults = {f.name: f.default for f in dataclasses.fields(SynthSpec)}
    return dataclasses.replace(spec, **{name: defaults[name] for name in _DAY_ONLY})


def population(spec: SynthSpec) -> Population:
    """The identity population of ``spec`` (cached in-process)."""
    return _population(_pop_key(spec))


@functools.lru_cache(maxsize=4)
def _population(spec: SynthSpec) -> Population:
    n, m = spec.identities, spec.max_pose_modes
    rng = _rng(spec.seed, _P_POP)
    rank = rng.permutation(n).astype(np.float64) + 1.0
    late_frac = min(spec.new_identity_rate * (spec.days - 1), MAX_LATE_FRACTION)
    late = (rng.random(n) < late_frac) & (rank > 1)
    first_day = np.where(late, rng.integers(1, max(spec.days, 2), n), 0).astype(np.int32)
    n_modes = rng.integers(1, m + 1, n)
    freq = rng.gamma(2.0, size=(n, m)) * (np.arange(m) < n_modes[:, None])
    mode_cum = np.cumsum(freq / freq.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
    mode_cum[np.arange(m) >= n_modes[:, None] - 1] = 1.0  # exactly n_modes modes, never more
    parent, rho = _lookalikes(spec, rng)
    log.debug("population of %d identities, %d late, %d look-alikes", n, late.sum(), (parent >= 0).sum())
    return _frozen(
        Population(
            weight=rank**-spec.zipf_exponent,
            first_day=first_day,
            sigma=rng.uniform(*spec.noise_sigma, n).astype(np.float32),
            pose_mag=rng.uniform(*spec.pose_magnitude, n).astype(np.float32),
            mode_cum=mode_cum,
            pose_idx=rng.integers(0, POSE_BANK, (n, m)).astype(np.int32),
            pose_sign=rng.choice(np.array([-1.0, 1.0], np.float32), (n, m)),
            home_camera=rng.integers(0, spec.n_cameras, n).astype(np.int32),
            parent=parent,
            rho=rho,
        )
    )


def _frozen(pop: Population) -> Population:
    """Make the (cached, shared) arrays read-only."""
    for f in dataclasses.fields(pop):
        getattr(pop, f.name).flags.writeable = False
    return pop


def _lookalikes(spec: SynthSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Parents (-1 if none) and centre cosines; a parent is a non-look-alike of the child's block."""
    n, br = spec.identities, spec.block_rows
    child = rng.random(n) < spec.lookalike_fraction
    pick = rng.random(n)
    parent = np.full(n, -1, np.int64)
    for start in range(0, n, br):
        stop = min(start + br, n)
        kids = np.flatnonzero(child[start:stop]) + start
        cands = np.flatnonzero(~child[start:stop]) + start
        if len(kids) and len(cands):
            parent[kids] = cands[(pick[kids] * len(cands)).astype(np.int64)]
    rho = np.where(parent >= 0, rng.uniform(*spec.lookalike_similarity, n), 0.0).astype(np.float32)
    return parent, rho


def lookalike_pairs(spec: SynthSpec) -> np.ndarray:
    """(k, 2) int64 array of (look-alike identity, its parent identity)."""
    parent = population(spec).parent
    child = np.flatnonzero(parent >= 0)
    return np.stack([child, parent[child]], axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@functools.lru_cache(maxsize=4)
def _pose_bank(seed: int, dim: int) -> np.ndarray:
    return _unit_rows(_rng(seed, _P_BANK).standard_normal((POSE_BANK, dim), dtype=np.float32))


@functools.lru_cache(maxsize=4)
def _blur_basis(seed: int, dim: int, k: int) -> np.ndarray:
    """(k, dim) orthonormal shared blur directions."""
    q, _ = np.linalg.qr(_rng(seed, _P_BLUR).standard_normal((dim, k)))
    return np.ascontiguousarray(q.T, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _block_centres(spec: SynthSpec, block: int) -> np.ndarray:
    """Unit centres (float32, (rows, dim)) of identities ``block*block_rows ...``; look-alikes mixed in."""
    br, pop = spec.block_rows, _population(spec)
    start, stop = block * br, min((block + 1) * br, spec.identities)
    base = _unit_rows(_rng(spec.seed, _P_CENTRE, block).standard_normal((stop - start, spec.dim), dtype=np.float32))
    kids = np.flatnonzero(pop.parent[start:stop] >= 0)
    if len(kids):
        par = base[pop.parent[start + kids] - start]
        own = base[kids]
        own -= np.einsum("ij,ij->i", own, par)[:, None] * par
        rho = pop.rho[start + kids][:, None]
        base[kids] = rho * par + np.sqrt(1.0 - rho**2) * _unit_rows(own)
    base.flags.writeable = False
    return base


def identity_centres(spec: SynthSpec, ids: np.ndarray, out: np.ndarray) -> None:
    """out[k] = centre of identity ids[k] (unit, float32); ``ids`` must be sorted."""
    key, br = _pop_key(spec), spec.block_rows
    blocks = ids // br
    for b in np.unique(blocks):
        lo, hi = np.searchsorted(blocks, [b, b + 1])
        np.take(_block_centres(key, int(b)), ids[lo:hi] - b * br, axis=0, out=out[lo:hi])


@dataclass(frozen=True, eq=False)
class _Faces:
    """Per-face scalars of a day in identity-sorted generation order."""

    label: np.ndarray
    mode: np.ndarray
    lowq: np.ndarray
    q: np.ndarray
    sigma: np.ndarray
    camera: np.ndarray
    t_ms: np.ndarray


def _day_counts(spec: SynthSpec, pop: Population, rng: np.random.Generator, day: int) -> np.ndarray:
    """Faces per identity on ``day`` (Zipf weights x day jitter, multinomial)."""
    shape = 1.0 / max(spec.day_jitter, 1e-3) ** 2
    w = pop.weight * rng.gamma(shape, 1.0 / shape, spec.identities) * (pop.first_day <= day)
    return rng.multinomial(spec.faces_per_day, w / w.sum())


def _visits(
    spec: SynthSpec, pop: Population, rng: np.random.Generator, counts: np.ndarray, label: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera and ms-of-day of each face: faces are grouped in visits (one camera, one time)."""
    n_visits = np.where(counts > 0, 1 + counts // spec.faces_per_visit, 0)
    first = np.concatenate([[0], np.cumsum(n_visits)[:-1]])
    total = int(n_visits.sum())
    owner = np.repeat(np.arange(spec.identities), n_visits)
    home = rng.random(total) < spec.camera_home_prob
    cam = np.where(home, pop.home_camera[owner], rng.integers(0, spec.n_cameras, total))
    comp = rng.choice(len(_DAY_PROFILE), total, p=[w for _, _, w in _DAY_PROFILE])
    hours = rng.normal([m for m, _, _ in _DAY_PROFILE], [s for _, s, _ in _DAY_PROFILE], (total, 3))
    v_ms = np.clip(hours[np.arange(total), comp] * 3_600_000, 0, MS_PER_DAY - 1)
    visit = first[label] + rng.integers(0, n_visits[label])
    t_ms = v_ms[visit] + rng.exponential(60_000.0, len(label))
    return cam[visit].astype(np.int32), np.clip(t_ms, 0, MS_PER_DAY - 1).astype(np.int64)


def _day_faces(spec: SynthSpec, day: int) -> _Faces:
    pop, rng = population(spec), _rng(spec.seed, _P_DAY, day)
    counts = _day_counts(spec, pop, rng, day)
    label = np.repeat(np.arange(spec.identities, dtype=np.int64), counts)
    n = len(label)
    mode = (rng.random(n, dtype=np.float32)[:, None] > pop.mode_cum[label]).sum(axis=1).astype(np.int8)
    lowq = rng.random(n) < spec.lowq_fraction
    q = np.where(lowq, rng.beta(2.0, 5.0, n), rng.beta(5.0, 2.0, n))
    scale = np.where(lowq, spec.lowq_noise_factor, 1.0 + 0.5 * (0.7 - q))
    camera, t_ms = _visits(spec, pop, rng, counts, label)
    return _Faces(
        label=label,
        mode=mode,
        lowq=lowq,
        q=q,
        sigma=(pop.sigma[label] * scale).astype(np.float32),
        camera=camera,
        t_ms=t_ms,
    )


def _chunk_features(spec: SynthSpec, faces: _Faces, lo: int, hi: int, day: int) -> np.ndarray:
    """Raw features (float32, (hi-lo, dim)) of generation-order faces lo..hi."""
    pop, dim = population(spec), spec.dim
    rng = _rng(spec.seed, _P_NOISE, day, lo // CHUNK_ROWS)
    ids, mode = faces.label[lo:hi], faces.mode[lo:hi].astype(np.intp)
    v = rng.standard_normal((hi - lo, dim), dtype=np.float32)
    v *= (faces.sigma[lo:hi] / np.float32(np.sqrt(dim)))[:, None]
    tmp = np.empty_like(v)
    identity_centres(spec, ids, tmp)
    v += tmp
    mag = pop.pose_mag[ids] * pop.pose_sign[ids, mode]
    np.take(_pose_bank(spec.nuisance, dim), pop.pose_idx[ids, mode], axis=0, out=tmp)
    v += tmp * mag[:, None]
    low = np.flatnonzero(faces.lowq[lo:hi])
    if len(low):
        v[low] += _blur(spec, rng, len(low))
    norm = spec.norm_range[0] + (spec.norm_range[1] - spec.norm_range[0]) * faces.q[lo:hi]
    norm = norm * np.exp(rng.normal(0.0, 0.05, hi - lo))
    v *= (norm / np.linalg.norm(v, axis=1)).astype(np.float32)[:, None]
    return v


def _blur(spec: SynthSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, dim) shared blur components: beta * normalise(b_0 + 0.5 * sum_k g_k b_k)."""
    basis = _blur_basis(spec.nuisance, spec.dim, spec.blur_directions)
    coef = np.zeros((n, spec.blur_directions), np.float32)
    coef[:, 0] = 1.0
    coef[:, 1:] = 0.5 * rng.standard_normal((n, spec.blur_directions - 1), dtype=np.float32)
    coef *= (rng.uniform(*spec.blur_strength, n) / np.linalg.norm(coef, axis=1)).astype(np.float32)[:, None]
    return coef @ basis


def generate_day_arrays(spec: SynthSpec, day_index: int) -> SynthDay:
    """Generate day ``day_index`` (0-based) as numpy arrays, including ground truth."""
    if not 0 <= day_index < spec.days:
        raise ValueError(f"day_index {day_index} outside 0..{spec.days - 1}")
    faces = _day_faces(spec, day_index)
    n = len(faces.label)
    row = _rng(spec.seed, _P_DAY, day_index, 1).permutation(n)  # generation order -> output row
    feature = np.empty((n, spec.dim), np.float32)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        feature[row[lo:hi]] = _chunk_features(spec, faces, lo, hi, day_index)

    def shuffled(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        out[row] = x
        return out

    obs = np.clip(faces.q + _rng(spec.seed, _P_DAY, day_index, 2).normal(0, spec.quality_noise, n), 0, 1)
    day0_ms = (spec.start_date + datetime.timedelta(days=day_index) - datetime.date(1970, 1, 1)).days * MS_PER_DAY
    return SynthDay(
        face_id=np.arange(n, dtype=np.int64) + day_index * spec.faces_per_day,
        feature=feature,
        label=shuffled(faces.label),
        camera_id=shuffled(faces.camera),
        captured_at_ms=shuffled(faces.t_ms) + day0_ms,
        quality=shuffled(obs.astype(np.float32)),
        lowq=shuffled(faces.lowq),
        pose_mode=shuffled(faces.mode),
    )


def day_schema(dim: int) -> pa.Schema:
    """The day format: face_id, feature (raw float32[dim]), label, camera_id, captured_at, quality."""
    return pa.schema(
        [
            pa.field("face_id", pa.int64()),
            pa.field("feature", pa.list_(pa.float32(), dim)),
            pa.field("label", pa.int64()),
            pa.field("camera_id", pa.int32()),
            pa.field("captured_at", pa.timestamp("ms")),
            pa.field("quality", pa.float32()),
        ]
    )


def generate_day(spec: SynthSpec, day_index: int) -> pa.Table:
    """Day ``day_index`` (0-based) in the day format, rows in a seed-deterministic shuffled order."""
    d = generate_day_arrays(spec, day_index)
    flat = d.feature.reshape(-1)
    values = pa.Array.from_buffers(pa.float32(), len(flat), [None, pa.py_buffer(flat)])  # zero-copy
    feature = pa.FixedSizeListArray.from_arrays(values, spec.dim)
    cols = [
        pa.array(d.face_id),
        feature,
        pa.array(d.label),
        pa.array(d.camera_id),
        pa.array(d.captured_at_ms, pa.timestamp("ms")),
        pa.array(d.quality),
    ]
    return pa.Table.from_arrays(cols, schema=day_schema(spec.dim))


def write_dataset(spec: SynthSpec, out_dir: str | Path) -> list[Path]:
    """Writes out_dir/day=YYYY-MM-DD/part-00000.parquet ... for each day; returns the day directories."""
    out, dirs = Path(out_dir), []
    for day in range(spec.days):
        table = generate_day(spec, day)
        day_dir = out / f"day={(spec.start_date + datetime.timedelta(days=day)).isoformat()}"
        day_dir.mkdir(parents=True, exist_ok=True)
        bounds = np.linspace(0, table.num_rows, spec.files_per_day + 1).astype(np.int64)
        for part in range(spec.files_per_day):
            piece = table.slice(int(bounds[part]), int(bounds[part + 1] - bounds[part]))
            pq.write_table(piece, day_dir / f"part-{part:05d}.parquet", compression="snappy")
        log.info("wrote %s: %d faces in %d files", day_dir, table.num_rows, spec.files_per_day)
        dirs.append(day_dir)
    return dirs
