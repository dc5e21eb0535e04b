"""Forward and backward (cycle-consistent) matching of target patches to the reference bank.

Forward, target → reference: each target patch gets the mean cosine similarity of its top-k
foreground and top-k background reference patches; their difference is the *margin*, the
matching map. Forward, reference → target: each reference foreground (background) patch votes for
its best target patch. Backward: a target patch's best match over the whole bank must land in the
class it was voted for; foreground votes that fail the cycle are hard negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from wsi_sat.sat.engine import ONE_THREAD, Workers

_CHUNK = 4096  # query patches per similarity block (a 1024-px tile: 4096)


@dataclass(frozen=True)
class MatchResult:
    """Per target patch (flattened, N): margin, votes and backward labels."""

    margin: np.ndarray  # (N,) top-k fg similarity minus top-k bg similarity
    fg_sim: np.ndarray  # (N,) top-k fg similarity
    back_label: np.ndarray  # (N,) 1 if the best bank match is foreground, else 0
    fg_votes: np.ndarray  # (N,) reference fg patches whose best target match is this patch
    bg_votes: np.ndarray  # (N,) reference bg patches whose best target match is this patch
    voted: bool = True  # False: matched without the reference → target votes (all zero)

    @classmethod
    def margin_only(cls, margin: np.ndarray) -> MatchResult:
        """A result that carries only a margin (a slide decision's, in the map mode: nothing
        else is read), without similarities or votes."""
        zeros = np.zeros(len(margin), np.int32)
        return cls(margin=margin, fg_sim=np.full(len(margin), np.nan, np.float32),
                   back_label=zeros.astype(np.int8), fg_votes=zeros, bg_votes=zeros,
                   voted=False)

    @property
    def positives(self) -> np.ndarray:
        """Cycle-consistent foreground candidates (voted by fg, best match back is fg)."""
        return (self.fg_votes > 0) & (self.back_label == 1)

    @property
    def hard_negatives(self) -> np.ndarray:
        """Voted by fg but the best match back lands in the background: failed cycle."""
        return (self.fg_votes > 0) & (self.back_label == 0)

    @property
    def negatives(self) -> np.ndarray:
        """Cycle-consistent background candidates."""
        return (self.bg_votes > 0) & (self.back_label == 0)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def fuse(emb: np.ndarray, colour: np.ndarray, colour_mean: np.ndarray, colour_std: np.ndarray,
         colour_weight: float) -> np.ndarray:
    """Unit-norm encoder features joined with z-scored colour features, then unit-normed."""
    e = normalise(emb.astype(np.float32))
    if colour_weight <= 0:
        return e
    c = (colour - colour_mean) / colour_std
    c = c * (colour_weight / np.sqrt(c.shape[-1]))
    return normalise(np.concatenate([e, c.astype(np.float32)], axis=-1))


def _topk_mean(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each row's k largest values, and the largest."""
    k = max(1, min(k, sim.shape[1]))
    top = sim.topk(k, dim=1).values
    return top.mean(dim=1), top[:, 0]


def _similarity(q: np.ndarray, bank_t: np.ndarray, workers: Workers) -> np.ndarray:
    """q @ bank_t by numpy's BLAS, rows split over the caller's threads: inside the per-image
    SAT numpy's BLAS is held to one thread (see `Segmenter`), and this product is its one large
    call (a 1024-px tile: 4096 x ~4000 x ~270)."""
    out = np.empty((q.shape[0], bank_t.shape[1]), dtype=np.float32)
    parts = max(1, min(workers.count, q.shape[0] // 512))
    if parts == 1:
        return np.matmul(q, bank_t, out=out)
    cuts = np.linspace(0, q.shape[0], parts + 1).round().astype(int)
    list(workers.map(lambda ab: np.matmul(q[ab[0]:ab[1]], bank_t, out=out[ab[0]:ab[1]]),
                     pairwise(cuts)))
    return out


def _column_max(sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sim.max(dim=0) (values, first row index of each column's maximum), computed as the
    column maxima and then the rows that reach them: torch's CPU arg-reduction over rows is
    strided and slower."""
    val = sim.amax(dim=0)
    rows, cols = torch.nonzero(sim == val, as_tuple=True)
    idx = torch.full((sim.shape[1],), sim.shape[0], dtype=torch.int64)
    return val, idx.scatter_reduce_(0, cols, rows, "amin")


@torch.inference_mode()
def match(
    query: np.ndarray,
    bank: np.ndarray,
    bank_labels: np.ndarray,
    top_k: int,
    *,
    exclude: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None,
    votes: bool = True,
    workers: Workers = ONE_THREAD,
) -> MatchResult:
    """Match query patches (N, D) to a labelled bank (M, D); both unit-norm.

    exclude = (query_xy, query_ref, bank_xy, bank_ref, radius): bank patches of the same
    reference within `radius` of the query are ignored (self-calibration on the reference).
    votes=False skips the reference → target votes (the similarity matrix's column maxima, a
    quarter of the matching's time): the map decoding mode uses only the margin; prompts need
    the votes and refuse a result without them. `workers`: the caller's threads for the
    similarity product.
    """
    order = np.argsort(bank_labels, kind="stable")  # background block, then foreground block
    if exclude is not None:
        qxy, qref, bxy, bref, radius = exclude
        exclude = (qxy, qref, bxy[order], bref[order], radius)
    # similarities by numpy's BLAS (OpenBLAS, faster than torch's sgemm on the CPUs we run
    # on); the reductions by torch, on the same memory
    q = np.ascontiguousarray(query, dtype=np.float32)
    b = np.ascontiguousarray(bank[order], dtype=np.float32)
    nb = int((bank_labels == 0).sum())  # bank[:nb] background, bank[nb:] foreground
    nf = len(bank_labels) - nb
    n = q.shape[0]
    fg_sim = torch.full((n,), -1.0)
    bg_sim = torch.full((n,), -1.0)
    back = torch.zeros(n, dtype=torch.int64)
    best_q_val = torch.full((b.shape[0],), -2.0)
    best_q_idx = torch.zeros(b.shape[0], dtype=torch.int64)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        sim = torch.from_numpy(_similarity(q[start:stop], b.T, workers))
        if exclude is not None:
            sim = _left_out(sim, exclude, start, stop)
        fg_top = bg_top = torch.full((stop - start,), -3.0)
        if nf:
            fg_sim[start:stop], fg_top = _topk_mean(sim[:, nb:], top_k)
        if nb:
            bg_sim[start:stop], bg_top = _topk_mean(sim[:, :nb], top_k)
        # the best bank match is foreground iff the best fg beats the best bg (ties: bg, as
        # an arg-max over the bg-first bank order)
        back[start:stop] = (fg_top > bg_top).long()
        if not votes:
            continue
        val, idx = _column_max(sim)
        better = val > best_q_val
        best_q_val = torch.where(better, val, best_q_val)
        best_q_idx = torch.where(better, idx + start, best_q_idx)
    fg_votes = torch.bincount(best_q_idx[nb:], minlength=n) if nf and votes else torch.zeros(n)
    bg_votes = torch.bincount(best_q_idx[:nb], minlength=n) if nb and votes else torch.zeros(n)
    return MatchResult(margin=(fg_sim - bg_sim).numpy(), fg_sim=fg_sim.numpy(),
                       back_label=back.numpy().astype(np.int8),
                       fg_votes=fg_votes.numpy().astype(np.int32),
                       bg_votes=bg_votes.numpy().astype(np.int32), voted=votes)


def _left_out(sim: torch.Tensor, exclude: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                float], start: int, stop: int) -> torch.Tensor:
    """Similarities of query rows start:stop with the bank patches of their own reference
    within the exclusion radius set below any real similarity."""
    qxy, qref, bxy, bref, radius = exclude
    d2 = torch.cdist(torch.from_numpy(qxy[start:stop]).float(), torch.from_numpy(bxy).float())
    same = torch.from_numpy(qref[start:stop])[:, None] == torch.from_numpy(bref)[None, :]
    return sim.masked_fill(same & (d2 < radius), -2.0)
