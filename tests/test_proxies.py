"""Cheap proxies against the exact distance (bestbatch.proxies): the per-epoch Spearman rho and top-m overlap
against a direct computation, the last module's tensors, the seeds' t-interval, and the step's CSV."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bestbatch.formats import Matrix, write_matrix
from bestbatch.proxies import (
    COLUMNS,
    PROXIES,
    epoch_agreement,
    last_module_tensors,
    proxy_table,
    proxy_values,
    top_m,
    top_overlap,
)
from bestbatch.report import index_html
from bestbatch.steps.proxies import proxies_table

PHASES = [(1, 1, 3, 0.1), (2, 4, 6, 0.01)]
NAMES = ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "linear.weight", "linear.bias"]


def matrix(seed, E=6, K=12):
    """A gathered matrix with random distances, norms, losses and per-tensor distances (the NAMES)."""
    rng = np.random.default_rng(seed)
    layers = rng.uniform(0.1, 1.0, (E, K, len(NAMES)))
    distance = np.sqrt((layers**2).sum(-1))
    return Matrix(
        epoch=np.arange(1, E + 1),
        batch=np.arange(K),
        distance=distance,
        cosine=rng.uniform(-1, 1, (E, K)),
        norm=distance + rng.normal(0, 0.3, (E, K)),
        train_loss=rng.uniform(1, 2, (E, K)),
        train_acc=rng.uniform(0, 1, (E, K)),
        full_norm=np.ones(E),
        lr=np.repeat([0.1, 0.01], E // 2),
        phase=np.repeat([1, 2], E // 2),
        test_loss=np.ones(E),
        test_acc=np.linspace(0.3, 0.7, E),
        batch_score_min=np.arange(K) - 0.5,
        batch_score_mean=np.arange(K, dtype=float),
        batch_score_max=np.arange(K) + 0.5,
        layer_distance=layers,
        layer_name=np.array(NAMES, dtype=object),
        noise_scale=np.ones(E),
        gradient_diversity=np.ones(E),
        batch_size=50,
    )


def direct_overlap(proxy_row, exact_row, m):
    return len(set(np.argsort(proxy_row)[:m]) & set(np.argsort(exact_row)[:m])) / m


def test_spearman_and_overlap_against_a_direct_computation():
    rng = np.random.default_rng(1)
    exact, proxy = rng.normal(size=(7, 20)), rng.normal(size=(7, 20))
    proxy[:, 5:] += exact[:, 5:]  # some agreement, so the overlaps are not all near chance
    m = top_m(20)
    rho, overlap = epoch_agreement(proxy, exact, m)
    assert m == 5 and rho.shape == overlap.shape == (7,)
    np.testing.assert_allclose(rho, [sps.spearmanr(p, d).statistic for p, d in zip(proxy, exact)], rtol=1e-12)
    np.testing.assert_allclose(overlap, [direct_overlap(p, d, m) for p, d in zip(proxy, exact)])
    # ties: average ranks, as scipy's spearmanr
    tied = np.round(proxy, 0)
    rho_tied, _ = epoch_agreement(tied, exact, m)
    np.testing.assert_allclose(rho_tied, [sps.spearmanr(p, d).statistic for p, d in zip(tied, exact)], rtol=1e-12)


def test_the_distance_itself_agrees_fully_and_its_reverse_not_at_all():
    d = np.random.default_rng(2).uniform(1, 2, (4, 16))
    rho, overlap = epoch_agreement(d, d, top_m(16))
    np.testing.assert_allclose(rho, 1.0)
    np.testing.assert_allclose(overlap, 1.0)
    rho, overlap = epoch_agreement(-d, d, top_m(16))  # ranks descending: the farthest first
    np.testing.assert_allclose(rho, -1.0)
    np.testing.assert_allclose(overlap, 0.0)
    rho, overlap = epoch_agreement(np.log(d), d, top_m(16))  # any increasing function ranks alike
    np.testing.assert_allclose(rho, 1.0)


def test_ties_at_the_cut_count_in_expectation_and_constant_rows_are_nan():
    exact = np.array([[0.0, 1.0, 2.0, 3.0]])
    # proxy's first place is shared by batches 0 and 1: batch 0 is picked half the time
    assert top_overlap(np.array([[5.0, 5.0, 6.0, 7.0]]), exact, 1)[0] == pytest.approx(0.5)
    assert top_overlap(np.array([[5.0, 5.0, 5.0, 7.0]]), exact, 2)[0] == pytest.approx((2 / 3 + 2 / 3) / 2)
    rows = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 2.0, 0.0], [0.0, 1.0, np.nan, 2.0]])
    rho, overlap = epoch_agreement(rows, np.repeat(exact, 3, 0), 1)
    assert np.isnan(rho[0]) and np.isnan(overlap[0])  # a constant proxy ranks nothing
    assert rho[1] == pytest.approx(-0.8) and overlap[1] == 0.0
    assert np.isnan(rho[2]) and np.isnan(overlap[2])
    rho, overlap = epoch_agreement(exact, np.ones((1, 4)), 1)  # a constant distance: nothing to rank against
    assert np.isnan(rho[0]) and np.isnan(overlap[0])


def test_a_single_epoch_and_m_of_few_batches():
    d = np.array([3.0, 1.0, 2.0])
    assert top_m(3) == 1 and top_m(4) == 1 and top_m(195) == 48
    rho, overlap = epoch_agreement(d, d, top_m(3))
    assert rho.shape == (1,) and rho[0] == pytest.approx(1.0) and overlap[0] == 1.0
    with pytest.raises(ValueError, match="shape"):
        epoch_agreement(np.ones((2, 3)), np.ones((2, 4)), 1)


def test_the_last_module_is_the_last_tensor_s_module():
    assert last_module_tensors(NAMES) == [3, 4]
    assert last_module_tensors(["conv.weight", "fc.weight"]) == [1]
    # a module whose name starts like the last one's is another module
    assert last_module_tensors(["head.0.weight", "head.weight", "head.bias"]) == [1, 2]
    assert last_module_tensors(["layer4.1.bn2.weight", "layer4.1.bn2.bias", "fc.weight", "fc.bias"]) == [2, 3]
    assert last_module_tensors(["weight", "bias"]) == [0, 1]  # the network is one module
    with pytest.raises(ValueError):
        last_module_tensors([])


def test_proxy_values_of_a_matrix():
    m = matrix(0)
    values = proxy_values(m)
    assert list(values) == list(PROXIES)
    last, tensors = values["last_layer"]
    assert tensors == "linear.weight + linear.bias"
    np.testing.assert_allclose(last, np.sqrt(m.layer_distance[..., 3] ** 2 + m.layer_distance[..., 4] ** 2))
    assert values["batch_loss"][0] is not None and np.array_equal(values["batch_loss"][0], m.train_loss)
    assert np.array_equal(values["gradient_norm"][0], m.norm)


def test_the_seeds_mean_and_t_interval_against_scipy():
    runs = [matrix(seed) for seed in range(4)]
    rows = proxy_table({("tiny", "edges"): runs}, PHASES)
    assert len(rows) == len(PHASES) * len(PROXIES) * 2 and all(list(r) == list(COLUMNS) for r in rows)
    for phase, first, last, _lr in PHASES:
        sel = slice(first - 1, last)
        per_seed = [
            np.mean([sps.spearmanr(p, d).statistic for p, d in zip(r.norm[sel], r.distance[sel])]) for r in runs
        ]
        row = next(r for r in rows if (r["phase"], r["proxy"], r["statistic"]) == (phase, "gradient_norm", "spearman"))
        lo, hi = sps.t.interval(0.95, len(runs) - 1, loc=np.mean(per_seed), scale=sps.sem(per_seed))
        assert row["mean"] == pytest.approx(np.mean(per_seed), rel=1e-12)
        assert (row["lo"], row["hi"]) == (pytest.approx(lo, rel=1e-10), pytest.approx(hi, rel=1e-10))
        assert (row["n_seeds"], row["n_epochs"], row["m"], row["K"], row["chance"]) == (4, 12, 3, 12, 0.0)
        assert (row["first_epoch"], row["last_epoch"], row["level"]) == (first, last, pytest.approx(0.95))
        overlap = next(r for r in rows if (r["phase"], r["proxy"], r["statistic"]) == (phase, "batch_loss", "overlap"))
        assert overlap["chance"] == pytest.approx(3 / 12) and overlap["direction"] == "ascending"
        assert overlap["mean"] == pytest.approx(
            np.mean(
                [np.mean([direct_overlap(p, d, 3) for p, d in zip(r.train_loss[sel], r.distance[sel])]) for r in runs]
            )
        )


def test_one_seed_has_no_interval_and_a_constant_seed_is_left_out():
    one = proxy_table({("tiny", "edges"): [matrix(0)]}, PHASES)
    assert all(r["n_seeds"] == 1 and math.isnan(r["lo"]) and math.isnan(r["hi"]) for r in one)
    assert all(not math.isnan(r["mean"]) for r in one)
    flat = matrix(1)
    flat.train_loss = np.ones_like(flat.train_loss)  # ranks nothing in any epoch
    rows = proxy_table({("tiny", "edges"): [matrix(0), flat, matrix(2)]}, PHASES)
    loss = [r for r in rows if r["proxy"] == "batch_loss"]
    assert all(r["n_seeds"] == 2 and r["n_epochs"] == 6 for r in loss)
    assert all(r["n_seeds"] == 3 for r in rows if r["proxy"] != "batch_loss")
    # a phase with no epoch in any run has no rows
    assert not proxy_table({("tiny", "edges"): [matrix(0)]}, [(3, 7, 9, 0.001)])


def test_the_step_writes_the_documented_csv_and_the_index_shows_it(tmp_path):
    runs, metrics = [["tiny", 0], ["tiny", 1]], ["edges", "random"]
    paths = []
    for seed, metric in [(s, x) for _m, s in runs for x in metrics]:
        paths.append(str(tmp_path / f"seed_{seed}_{metric}.h5"))
        write_matrix(paths[-1], metric, matrix(10 * seed + len(metric)), "{}")
    out = tmp_path / "study" / "proxies.csv"
    proxies_table(paths, str(out), runs=runs, metrics=metrics, phases=PHASES, log=str(tmp_path / "proxies.log"))
    table = pd.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(metrics) * len(PHASES) * len(PROXIES) * 2
    assert set(table["statistic"]) == {"spearman", "overlap"} and set(table["n_seeds"]) == {2}
    assert set(table.loc[table["proxy"] == "last_layer", "tensors"]) == {"linear.weight + linear.bias"}
    assert "tiny, edges, last_layer: spearman by phase" in (tmp_path / "proxies.log").read_text()
    assert not list(out.parent.glob(".tmp-*"))
    page = index_html("s", "study: s\n", [], {}, {}, "claims.html", proxies=(table.to_dict("records"), "proxies.csv"))
    assert "<h2>Cheap proxies against the exact distance</h2>" in page and "<a href='proxies.csv'>" in page
    assert page.count("<td class=l>last_layer (linear.weight + linear.bias)</td>") == len(metrics) * len(PHASES)
    assert page.count("<td class=l>batch_loss</td>") == len(metrics) * len(PHASES)
    assert "0.250 (3 of 12)" in page
