"""Tests for daskcluster.metrics: hand-computed cases, conventions, brute-force reference, speed."""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from daskcluster.eval import metrics
from daskcluster.eval.metrics import bcubed, cluster_stats, contingency, evaluate, nmi, pairwise

EVAL_KEYS = {
    "bcubed_precision",
    "bcubed_recall",
    "bcubed_f",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f",
    "nmi",
    "n",
    "n_clusters",
    "n_singletons",
    "largest_cluster",
}


def _h(*probs: float) -> float:
    """Entropy (nats) of a discrete distribution given by probabilities."""
    return -sum(p * math.log(p) for p in probs if p > 0)


# --------------------------------------------------------------------------- brute-force reference


def _ref_bcubed(t: list, p: list) -> tuple[float, float, float]:
    """O(n^2) B-cubed straight from the per-item definition."""
    n = len(t)
    prec = rec = 0.0
    for i in range(n):
        same_cluster = [j for j in range(n) if p[j] == p[i]]
        same_class = [j for j in range(n) if t[j] == t[i]]
        correct = sum(1 for j in range(n) if p[j] == p[i] and t[j] == t[i])
        prec += correct / len(same_cluster)
        rec += correct / len(same_class)
    prec, rec = prec / n, rec / n
    return prec, rec, 2 * prec * rec / (prec + rec)


def _ref_pairwise(t: list, p: list) -> tuple[float, float, float]:
    """O(n^2) pair counting with the module's 0/0 conventions."""
    tp = pred_pairs = true_pairs = 0
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            same_p, same_t = p[i] == p[j], t[i] == t[j]
            tp += same_p and same_t
            pred_pairs += same_p
            true_pairs += same_t
    prec = tp / pred_pairs if pred_pairs else 1.0
    rec = tp / true_pairs if true_pairs else 1.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def _ref_nmi(t: list, p: list) -> float:
    """NMI from joint/marginal frequencies counted item by item (sklearn conventions)."""
    n = len(t)
    joint, ct, cp = Counter(zip(t, p)), Counter(t), Counter(p)
    if len(ct) == len(cp) == 1:
        return 1.0
    mi = sum(c / n * math.log(n * c / (ct[a] * cp[b])) for (a, b), c in joint.items())
    if mi <= 1e-15:
        return 0.0
    denom = 0.5 * (_h(*(c / n for c in ct.values())) + _h(*(c / n for c in cp.values())))
    return min(1.0, mi / denom)


# --------------------------------------------------------------------------- hand-computed cases


def test_hand_case_symmetric():
    # true [0,0,0,1,1], pred [0,0,1,1,1]
    # table: class0 -> (c0: 2, c1: 1); class1 -> (c1: 2); |c0|=2, |c1|=3; |class0|=3, |class1|=2
    # B3 P = (4/2 + 1/3 + 4/3)/5 = 11/15 ; B3 R = (4/3 + 1/3 + 4/2)/5 = 11/15 ; F = 11/15
    # pairs: TP = C(2,2)+C(1,2)+C(2,2) = 2 ; pred pairs = 1+3 = 4 ; true pairs = 3+1 = 4 -> 0.5 / 0.5 / 0.5
    # MI = 4/5 log(5/3) + 1/5 log(5/9) = log5 - 6/5 log3 ; H_true = H_pred = H(3/5, 2/5)
    t, p = [0, 0, 0, 1, 1], [0, 0, 1, 1, 1]
    assert bcubed(t, p) == pytest.approx((11 / 15, 11 / 15, 11 / 15), abs=1e-15)
    assert pairwise(t, p) == (0.5, 0.5, 0.5)
    expected_nmi = (math.log(5) - 1.2 * math.log(3)) / _h(0.6, 0.4)
    assert nmi(t, p) == pytest.approx(expected_nmi, abs=1e-12)
    assert nmi(t, p) == pytest.approx(0.43253806776631, abs=1e-12)
    np.testing.assert_array_equal(contingency(t, p).toarray(), [[2, 1], [0, 2]])


def test_hand_case_asymmetric():
    # true [0,0,0,1,1,2], pred [0,0,0,0,1,1]
    # table: class0 -> (c0: 3); class1 -> (c0: 1, c1: 1); class2 -> (c1: 1)
    # |c0| = 4, |c1| = 2 ; |class0| = 3, |class1| = 2, |class2| = 1
    # B3 P = (9/4 + 1/4 + 1/2 + 1/2)/6 = 3.5/6 = 7/12
    # B3 R = (9/3 + 1/2 + 1/2 + 1/1)/6 = 5/6 ; F = 2*(7/12)(5/6)/(7/12+10/12) = 35/51
    # pairs: TP = C(3,2) = 3 ; pred pairs = C(4,2)+C(2,2) = 7 ; true pairs = 3+1+0 = 4
    #   P = 3/7, R = 3/4, F = 2*(9/28)/(33/28) = 6/11
    # MI = 1/2 log(6*3/(3*4)) + 1/6 log(6/(2*4)) + 1/6 log(6/(2*2)) + 1/6 log(6/(1*2))
    t, p = [0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 1, 1]
    assert bcubed(t, p) == pytest.approx((7 / 12, 5 / 6, 35 / 51), abs=1e-15)
    assert pairwise(t, p) == pytest.approx((3 / 7, 3 / 4, 6 / 11), abs=1e-15)
    mi = 0.5 * math.log(1.5) + (math.log(0.75) + math.log(1.5) + math.log(3)) / 6
    denom = 0.5 * (_h(1 / 2, 1 / 3, 1 / 6) + _h(2 / 3, 1 / 3))
    assert nmi(t, p) == pytest.approx(mi / denom, abs=1e-12)
    # swapping the roles of truth and prediction swaps precision and recall
    assert bcubed(p, t) == pytest.approx((5 / 6, 7 / 12, 35 / 51), abs=1e-15)
    assert pairwise(p, t) == pytest.approx((3 / 4, 3 / 7, 6 / 11), abs=1e-15)
    assert nmi(p, t) == pytest.approx(nmi(t, p), abs=1e-15)


def test_contingency_layout():
    t, p = ["a", "b", "a", "c", "a"], [10, 20, 10, 20, 30]
    table = contingency(t, p)
    assert isinstance(table, sp.csr_matrix)
    assert table.has_canonical_format and table.dtype == np.int64
    # rows a, b, c and columns 10, 20, 30 in order of first appearance
    np.testing.assert_array_equal(table.toarray(), [[2, 0, 1], [0, 1, 0], [0, 1, 0]])


def test_cluster_stats_hand():
    # clusters: x -> 3 items, y -> 1, z -> 2, w -> 1
    stats = cluster_stats(["x", "y", "x", "z", "z", "x", "w"])
    assert stats == {"n": 7, "n_clusters": 4, "n_singletons": 2, "largest_cluster": 3}


# --------------------------------------------------------------------------- edge cases


def test_perfect_clustering_all_ones():
    t = [0, 0, 1, 1, 1, 2, 3, 3]
    p = ["b", "b", "a", "a", "a", "z", "q", "q"]  # same partition, renamed
    res = evaluate(t, p)
    for key in (
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f",
        "nmi",
    ):
        assert res[key] == 1.0, key


def test_all_in_one_cluster():
    # true [0,0,1,1,2,2], pred all in one cluster of 6
    # B3 P = (3 * 4/6)/6 = 1/3, R = (3 * 4/2)/6 = 1, F = 2*(1/3)/(4/3) = 1/2
    # pairs: TP = 3, pred pairs = C(6,2) = 15, true pairs = 3 -> P = 1/5, R = 1, F = 1/3
    # MI = 0 (prediction carries no information) -> NMI = 0
    t, p = [0, 0, 1, 1, 2, 2], [7] * 6
    assert bcubed(t, p) == pytest.approx((1 / 3, 1.0, 0.5), abs=1e-15)
    assert pairwise(t, p) == pytest.approx((0.2, 1.0, 1 / 3), abs=1e-15)
    assert nmi(t, p) == 0.0
    assert cluster_stats(p) == {"n": 6, "n_clusters": 1, "n_singletons": 0, "largest_cluster": 6}


def test_all_singletons():
    # true [0,0,1,1,2,2], pred all singletons
    # B3 P = 1, R = (6 * 1/2)/6 = 1/2, F = 2/3
    # pairs: no predicted pairs -> P = 1.0 (convention), TP = 0, true pairs = 3 -> R = 0, F = 0
    # MI = H_true = log 3, H_pred = log 6 -> NMI = log3 / ((log3 + log6)/2)
    t, p = [0, 0, 1, 1, 2, 2], list(range(6))
    assert bcubed(t, p) == pytest.approx((1.0, 0.5, 2 / 3), abs=1e-15)
    assert pairwise(t, p) == (1.0, 0.0, 0.0)
    assert nmi(t, p) == pytest.approx(2 * math.log(3) / math.log(18), abs=1e-12)
    assert cluster_stats(p) == {"n": 6, "n_clusters": 6, "n_singletons": 6, "largest_cluster": 1}


def test_both_single_cluster_and_both_singletons():
    assert evaluate(["a"] * 4, [1] * 4)["nmi"] == 1.0
    res = evaluate(list(range(5)), list("abcde"))  # both all-singletons: identical partitions
    assert all(res[k] == 1.0 for k in ("bcubed_f", "pairwise_precision", "pairwise_recall", "pairwise_f", "nmi"))


def test_true_singletons_pred_merged():
    # truth has no pairs -> recall 1.0 by convention; prediction pairs are all false -> precision 0
    assert pairwise([0, 1, 2, 3], [0, 0, 1, 1]) == (0.0, 1.0, 0.0)


def test_single_item():
    res = evaluate([5], ["x"])
    assert res["n"] == 1 and res["n_clusters"] == 1 and res["n_singletons"] == 1
    assert res["bcubed_f"] == res["pairwise_f"] == res["nmi"] == 1.0


def test_pairwise_no_overflow_at_1e8():
    # one class/cluster of 1e8 items: C(1e8, 2) = 4_999_999_950_000_000 must be exact in int64
    big = 100_000_000
    t = metrics._Table(
        big,
        np.array([0]),
        np.array([0]),
        np.array([big], dtype=np.int64),
        np.array([big], dtype=np.int64),
        np.array([big], dtype=np.int64),
    )
    assert metrics._comb2(np.array([big])) == big * (big - 1) // 2
    assert metrics._pairwise(t) == (1.0, 1.0, 1.0)
    half = big // 2  # truth: two classes of 5e7, prediction: one cluster
    t = metrics._Table(
        big,
        np.array([0, 1]),
        np.array([0, 0]),
        np.array([half, half], dtype=np.int64),
        np.array([half, half], dtype=np.int64),
        np.array([big], dtype=np.int64),
    )
    expected_p = 2 * (half * (half - 1) // 2) / (big * (big - 1) // 2)
    assert metrics._pairwise(t)[0] == pytest.approx(expected_p, rel=1e-15)


# --------------------------------------------------------------------------- invariances, inputs


def test_invariance_to_label_renaming_and_item_order():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 7, 300), rng.integers(0, 11, 300)
    base = evaluate(t, p)
    t_renamed = np.array([f"id-{v * 31 % 7}" for v in t], dtype=object)
    p_renamed = p * 1000 + 17  # injective relabelling
    assert evaluate(t_renamed, p_renamed) == pytest.approx(base, abs=1e-14)
    perm = rng.permutation(300)
    assert evaluate(t[perm], p[perm]) == pytest.approx(base, abs=1e-14)


@pytest.mark.parametrize(
    "t, p",
    [
        (pd.Series(["a", "a", "b"]), pd.Categorical(["x", "y", "y"])),
        (("a", "a", "b"), pd.Index([1.5, 2.5, 2.5])),
        (np.array([1, "1", 2], dtype=object), np.array([0, 0, 1])),
        (iter([3, 3, 4]), np.array([True, False, False])),
    ],
)
def test_accepts_various_label_types(t, p):
    res = evaluate(t, p)
    assert res["n"] == 3 and 0.0 <= res["nmi"] <= 1.0


def test_evaluate_keys_types_json():
    res = evaluate(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert set(res) == EVAL_KEYS
    for key, value in res.items():
        expected = int if key in {"n", "n_clusters", "n_singletons", "largest_cluster"} else float
        assert type(value) is expected, key
    assert json.loads(json.dumps(res)) == res


@pytest.mark.parametrize("func", [bcubed, pairwise, nmi, evaluate, contingency])
def test_validation_errors(func):
    with pytest.raises(ValueError, match="different lengths"):
        func([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        func([], [])
    with pytest.raises(ValueError, match="labels_true.*missing"):
        func(np.array([0.0, np.nan, 1.0]), [0, 0, 1])
    with pytest.raises(ValueError, match="labels_pred.*missing"):
        func(["a", "b", "c"], ["x", None, "y"])
    with pytest.raises(ValueError, match="1-D"):
        func(np.zeros((2, 2)), np.zeros((2, 2)))


def test_cluster_stats_validation():
    with pytest.raises(ValueError, match="empty"):
        cluster_stats(np.array([]))
    with pytest.raises(ValueError, match="missing"):
        cluster_stats([1, float("nan")])
    with pytest.raises(ValueError, match="scalar"):
        cluster_stats(5)


# --------------------------------------------------------------------------- brute-force comparison


@pytest.mark.parametrize("seed", range(40))
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    k_true, k_pred = int(rng.integers(1, n + 1)), int(rng.integers(1, n + 1))
    t = rng.integers(0, k_true, n).tolist()
    p = [f"c{v}" for v in rng.integers(0, k_pred, n)]
    res = evaluate(t, p)
    got = [res[k] for k in ("bcubed_precision", "bcubed_recall", "bcubed_f")]
    assert got == pytest.approx(_ref_bcubed(t, p), abs=1e-12)
    got = [res[k] for k in ("pairwise_precision", "pairwise_recall", "pairwise_f")]
    assert got == pytest.approx(_ref_pairwise(t, p), abs=1e-12)
    assert res["nmi"] == pytest.approx(_ref_nmi(t, p), abs=1e-12)
    assert bcubed(t, p) == pytest.approx(_ref_bcubed(t, p), abs=1e-12)
    assert pairwise(t, p) == pytest.approx(_ref_pairwise(t, p), abs=1e-12)
    assert nmi(t, p) == pytest.approx(res["nmi"], abs=0)
    sizes = Counter(p).values()
    assert cluster_stats(p) == {
        "n": n,
        "n_clusters": len(sizes),
        "n_singletons": sum(s == 1 for s in sizes),
        "largest_cluster": max(sizes),
    }


# --------------------------------------------------------------------------- speed


def test_speed_2m_labels():
    rng = np.random.default_rng(0)
    n = 2_000_000
    t = rng.integers(0, 200_000, n)
    p = np.where(rng.random(n) < 0.9, t, rng.integers(0, 400_000, n))  # 90% correct, rest noise
    start = time.perf_counter()
    res = evaluate(t, p)
    elapsed = time.perf_counter() - start
    assert res["n"] == n and 0.0 < res["nmi"] < 1.0
    assert elapsed < 10.0, f"evaluate on {n} labels took {elapsed:.2f} s"
