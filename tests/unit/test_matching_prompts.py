import numpy as np
import pytest

from wsi_sat.config import MatchingConfig, PromptConfig
from wsi_sat.sat.matching import MatchResult, fuse, match, normalise
from wsi_sat.sat.prompts import Candidates, feature_space, physical_space, sparse_sample


def _bank(rng, n=60, d=16):
    fg_c, bg_c = rng.normal(size=d), rng.normal(size=d)
    fg = normalise(fg_c + 0.3 * rng.normal(size=(n, d)))
    bg = normalise(bg_c + 0.3 * rng.normal(size=(n, d)))
    return fg_c, bg_c, np.concatenate([fg, bg]), np.r_[np.ones(n), np.zeros(n)].astype(np.int8)


def test_forward_margin_separates_classes_and_cycle_holds():
    rng = np.random.default_rng(0)
    fg_c, bg_c, bank, labels = _bank(rng)
    q = normalise(np.stack([fg_c + 0.3 * rng.normal(size=16) for _ in range(10)]
                           + [bg_c + 0.3 * rng.normal(size=16) for _ in range(10)]))
    res = match(q, bank, labels, top_k=5)
    assert (res.margin[:10] > 0).all() and (res.margin[10:] < 0).all()
    assert (res.back_label[:10] == 1).all() and (res.back_label[10:] == 0).all()
    assert res.fg_votes[:10].sum() == 60 and res.bg_votes[10:].sum() == 60
    assert res.positives[:10].any() and not res.positives[10:].any()


def test_failed_cycle_gives_hard_negatives():
    # a target patch voted by fg references whose best match back is a bg reference patch
    bank = normalise(np.array([[1.0, 0.0], [0.9, 0.44], [0.0, 1.0]]))
    labels = np.array([1, 0, 0], np.int8)
    q = normalise(np.array([[0.8, 0.6], [0.0, 1.0]]))  # closest to the bg patch [0.9, 0.44]
    res = match(q, bank, labels, top_k=1)
    assert res.fg_votes[0] == 1 and res.back_label[0] == 0
    assert res.hard_negatives[0]


def test_exclusion_leaves_the_neighbourhood_out():
    bank = normalise(np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]))
    labels = np.array([1, 0, 1], np.int8)
    q = bank[:1].copy()
    near = (np.array([[0.0, 0.0]], np.float32), np.zeros(1, np.int32),
            np.array([[0, 0], [100, 100], [100, 0]], np.float32), np.zeros(3, np.int32), 10.0)
    res = match(q, bank, labels, top_k=1, exclude=near)
    assert res.fg_sim[0] == pytest.approx(float(bank[2] @ bank[0]), abs=1e-5)


def test_fuse_is_unit_norm_and_colour_weight_zero_is_pure_encoder():
    rng = np.random.default_rng(1)
    e, c = rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    f = fuse(e, c, c.mean(0), c.std(0), 0.5)
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    assert np.allclose(fuse(e, c, c.mean(0), c.std(0), 0.0), normalise(e))


def _result(margin, fg_votes, bg_votes, back):
    n = len(margin)
    return MatchResult(np.asarray(margin, np.float32), np.zeros(n, np.float32),
                       np.asarray(back, np.int8), np.asarray(fg_votes), np.asarray(bg_votes))


def test_no_failed_cycle_does_not_crash():
    # regression (GBMSeg): crashed when no match failed the cycle (no hard negatives)
    res = _result([0.2, 0.3, -0.2, -0.3], [1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0])
    assert not res.hard_negatives.any()
    cand = feature_space(res, np.eye(4), 0.0, PromptConfig(), cycle=True, seed=0)
    assert set(cand.pos) == {0, 1} and set(cand.neg) == {2, 3}


def test_fallbacks_when_a_side_is_empty():
    res = _result([0.2, 0.3, 0.25, 0.01], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1])
    cand = feature_space(res, np.eye(4), 0.0, PromptConfig(), cycle=True, seed=0)
    assert list(cand.pos[:1]) == [1]  # best map patch first
    res = _result([-0.2, -0.3], [0, 0], [0, 0], [0, 0])
    cand = feature_space(res, np.eye(2), 0.0, PromptConfig(), cycle=True, seed=0)
    assert len(cand.pos) == 0  # target absent: no positive prompt at all


def test_sparse_sample_keeps_the_point_farthest_from_the_other_class():
    pts = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]])
    other = np.array([[-20.0, 0.0]])
    kept = sparse_sample(pts, other, radius=50.0, cap=10)
    assert list(kept) == [2]


def test_sparse_sample_scales_and_caps():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1000, (20000, 2))
    kept = sparse_sample(pts, np.zeros((0, 2)), radius=100.0, cap=12)
    assert len(kept) == 12
    d = np.linalg.norm(pts[kept][:, None] - pts[kept][None], axis=-1)
    assert (d[np.triu_indices(12, 1)] > 100.0).all()


def test_exclusion_drops_negatives_near_positives():
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [500.0, 0.0]])
    cand = Candidates(np.array([0]), np.array([1, 2]), np.zeros(1, np.int32))
    cfg = PromptConfig(exclusion_radius_input_px=24.0, sample_radius_input_px=1.0)
    prompts = physical_space(centres, cand, cfg, px_per_input=1.0)
    assert prompts.neg_xy.tolist() == [[500.0, 0.0]]


@pytest.mark.parametrize("method", ["lr", "lda"])
def test_self_training_rescues_uncertain_patches(method):
    from wsi_sat.sat.transduce import self_train

    rng = np.random.default_rng(0)
    fg = rng.normal(1.0, 0.3, (60, 8))
    bg = rng.normal(-1.0, 0.3, (60, 8))
    feats = np.concatenate([fg, bg])
    truth = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    margin = np.where(truth, 0.05, -0.05).astype(np.float32)
    margin[:20] = -0.005  # a third of the foreground looks uncertain / wrong to the reference
    cfg = MatchingConfig(self_train_margin=0.03, self_train_method=method)
    refined = self_train(feats, margin, 0.0, cfg)
    assert ((refined > 0) == truth).mean() > ((margin > 0) == truth).mean()
    assert ((refined > 0) == truth).all()


def test_self_training_learns_only_from_valid_patches():
    """Glass next to tissue matches white lumens confidently; restricted to tissue patches,
    self-training must not learn 'brighter than stroma' as the target and drop the real
    (darker) foreground."""
    from wsi_sat.sat.transduce import self_train

    rng = np.random.default_rng(1)
    axis = np.r_[1.0, 0, 0, 0, 0, 0, 0, 0]
    fg = rng.normal(0, 0.2, (40, 8)) - axis  # epithelium: dark
    bg = rng.normal(0, 0.2, (40, 8))  # stroma
    glass = rng.normal(0, 0.2, (80, 8)) + axis  # glass: bright, matched like a lumen
    feats = np.concatenate([fg, bg, glass])
    truth = np.r_[np.ones(40, bool), np.zeros(120, bool)]
    margin = np.r_[np.full(40, 0.05), np.full(40, -0.05), np.full(80, 0.08)].astype(np.float32)
    margin[:30] = 0.01  # most real foreground is uncertain to the reference
    valid = np.r_[np.ones(80, bool), np.zeros(80, bool)]
    cfg = MatchingConfig(self_train_margin=0.03, self_train_method="lr")
    plain = self_train(feats, margin, 0.0, cfg)
    restricted = self_train(feats, margin, 0.0, cfg, valid=valid)
    tissue = slice(0, 80)
    assert ((restricted[tissue] > 0) == truth[tissue]).all()
    assert ((plain[tissue] > 0) == truth[tissue]).mean() < 0.8


def test_column_max_equals_torch_max_with_ties():
    import torch

    from wsi_sat.sat.matching import _column_max

    sim = torch.tensor([[0.1, 0.5, 0.3], [0.7, 0.5, -0.2], [0.7, 0.2, 0.3]])
    val, idx = _column_max(sim)
    assert val.tolist() == pytest.approx([0.7, 0.5, 0.3])
    assert idx.tolist() == [1, 0, 0]  # first row of each maximum, as torch.max
    big = torch.randn(300, 200)
    v2, i2 = big.max(dim=0)
    v1, i1 = _column_max(big)
    assert torch.equal(v1, v2) and torch.equal(i1, i2)


@pytest.mark.parametrize("threads, rows", [(1, 4096), (2, 4096), (2, 1500), (4, 300)])
def test_similarity_row_split_equals_the_product(threads, rows):
    from wsi_sat.runtime.lanes import lent_threads
    from wsi_sat.sat.matching import _similarity

    rng = np.random.default_rng(rows)
    q = rng.standard_normal((rows, 40)).astype(np.float32)
    b = rng.standard_normal((70, 40)).astype(np.float32)
    with lent_threads(threads) as workers:
        got = _similarity(q, b.T, workers)
    assert got.shape == (rows, 70) and got.dtype == np.float32
    np.testing.assert_allclose(got, q.astype(np.float64) @ b.T.astype(np.float64),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got, q @ b.T)  # the same numbers as one product


def test_match_without_votes_keeps_the_margin_and_refuses_prompts():
    rng = np.random.default_rng(3)
    fg_c, bg_c, bank, labels = _bank(rng)
    q = normalise(np.stack([c + 0.3 * rng.normal(size=16) for c in (fg_c, bg_c) * 8]))
    full = match(q, bank, labels, top_k=5)
    lean = match(q, bank, labels, top_k=5, votes=False)
    np.testing.assert_array_equal(lean.margin, full.margin)
    np.testing.assert_array_equal(lean.fg_sim, full.fg_sim)
    np.testing.assert_array_equal(lean.back_label, full.back_label)
    assert full.voted and full.fg_votes.sum() == 60
    assert not lean.voted and lean.fg_votes.sum() == 0 and lean.bg_votes.sum() == 0
    with pytest.raises(ValueError, match="votes"):
        feature_space(lean, q, 0.0, PromptConfig(), True, 0)
