"""A straightforward single-process numpy implementation of the reference system's two steps, used by the
tests as the oracle for exact mode. Written independently of the package's stage code."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph


class ReferenceGallery:
    def __init__(self):
        self.ids = np.empty(0, np.int64)
        self.means: np.ndarray | None = None
        self.counts = np.empty(0, np.int64)
        self.next_id = 0

    def centres(self) -> np.ndarray:
        return self.means / np.linalg.norm(self.means, axis=1, keepdims=True)

    def run_day(self, face_ids, x, t_assign, t_cluster, k):
        """Returns the cluster id of every face (input order)."""
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        out = np.full(len(x), -1, np.int64)
        if len(self.ids):
            sims = x @ self.centres().T
            best = sims.argmax(axis=1)
            ok = sims[np.arange(len(x)), best] >= t_assign
            out[ok] = self.ids[best[ok]]
            for j in np.unique(best[ok]):
                members = x[ok][best[ok] == j]
                n = self.counts[j]
                self.means[j] = (self.means[j] * n + members.sum(axis=0)) / (n + len(members))
                self.counts[j] += len(members)
        rest = np.flatnonzero(out < 0)
        labels = self._components(x[rest], t_cluster, k)
        order = {}
        for lab, _fid in sorted(zip(labels, face_ids[rest]), key=lambda p: p[1]):
            order.setdefault(lab, len(order))
        new_ids = np.array([self.next_id + order[lab] for lab in labels], np.int64)
        out[rest] = new_ids
        self._add(new_ids, x[rest])
        return out

    @staticmethod
    def _components(u, t_cluster, k):
        n = len(u)
        if n == 0:
            return np.empty(0, np.int64)
        sims = u @ u.T
        kk = min(k + 1, n)
        nbrs = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
        rows = np.repeat(np.arange(n), kk)
        cols = nbrs.ravel()
        keep = (sims[rows, cols] >= t_cluster) & (rows != cols)
        g = scipy.sparse.coo_matrix((np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(n, n))
        return scipy.sparse.csgraph.connected_components(g, directed=False)[1]

    def _add(self, new_ids, x):
        uniq = np.unique(new_ids)
        means = np.stack([x[new_ids == c].mean(axis=0) for c in uniq]) if len(uniq) else np.empty((0, x.shape[1]))
        counts = np.array([(new_ids == c).sum() for c in uniq], np.int64)
        self.means = means if self.means is None else np.concatenate([self.means, means])
        self.ids = np.concatenate([self.ids, uniq])
        self.counts = np.concatenate([self.counts, counts])
        self.next_id += len(uniq)
