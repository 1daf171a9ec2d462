"""A run whose network did not learn is a finding, and every page names it: the training curves, the front page
and summary.json. A run is planted at chance (test accuracy 0.10 with 10 classes, like the demo's `color` order)
beside one that learns."""

import html
import json
import re

import numpy as np
import pytest

from bestbatch import stats
from bestbatch.formats import Matrix, write_matrix
from bestbatch.plots import curves_figure, phase_summary
from bestbatch.report import claims_html, index_html
from bestbatch.stats import LEARNING_RULE, run_learning
from bestbatch.steps.analysis import study_config_text, study_index
from bestbatch.steps.plots import curves_page

E, K = 6, 4
PHASES = [(1, 1, 3, 0.1), (2, 4, 6, 0.01)]
N_CLASSES, N_TEST = 10, 1000  # chance 0.10; learned from 0.10 + 0.03 x 0.90 = 0.127 (stats.LEARNING_RULE)
ACCURACY = {"color": np.full(E, 0.10), "edges": np.linspace(0.3, 0.7, E)}  # color stays at chance
DID_NOT_LEARN = "the network did not learn under this order: test accuracy 0.10 over the last phase, chance 0.10"


def matrix(test_acc, seed=0):
    """A gathered matrix as the workflow writes it, with the given per-epoch test accuracies."""
    rng = np.random.default_rng(seed)
    distance = rng.uniform(0.5, 2.0, (E, K))
    return Matrix(
        epoch=np.arange(1, E + 1),
        batch=np.arange(K),
        distance=distance,
        cosine=rng.uniform(-1, 1, (E, K)),
        norm=distance + 1,
        train_loss=np.exp(-0.2 * np.arange(1, E + 1))[:, None] * rng.uniform(1, 2, (E, K)),
        train_acc=rng.uniform(0, 1, (E, K)),
        full_norm=np.ones(E),
        lr=np.repeat([0.1, 0.01], 3),
        phase=np.repeat([1, 2], 3),
        test_loss=np.ones(E),
        test_acc=np.asarray(test_acc, dtype=float),
        batch_score_min=np.arange(K) - 0.5,
        batch_score_mean=np.arange(K, dtype=float),
        batch_score_max=np.arange(K) + 0.5,
        layer_distance=distance[..., None] * np.sqrt([0.5, 0.5]),
        layer_name=np.array(["conv.weight", "linear.weight"]),
        noise_scale=rng.uniform(10, 100, E),
        gradient_diversity=rng.uniform(0.1, 2, E),
        batch_size=50,
    )


@pytest.fixture
def runs():
    return {metric: matrix(acc, seed) for seed, (metric, acc) in enumerate(ACCURACY.items())}


def learning_of(runs):
    return {metric: run_learning(m.epoch, m.test_acc, PHASES, N_CLASSES, N_TEST) for metric, m in runs.items()}


def legend_names(fig):
    return sorted(t.name for t in fig.data if t.showlegend)


def test_the_planted_run_is_at_chance_and_the_other_learned(runs):
    learning = learning_of(runs)
    assert not learning["color"].learned and learning["edges"].learned
    assert learning["color"].describe() == DID_NOT_LEARN


def test_curves_name_the_metric_that_did_not_learn_in_legend_and_title(runs):
    fig = curves_figure(runs, learning_of(runs))
    assert legend_names(fig) == ["color (did not learn)", "edges"]
    title = fig.layout.title.text
    assert f"color: {DID_NOT_LEARN}" in title
    assert "edges:" not in title
    assert fig.layout.margin.t > 100  # the lines under the title push the panels down, not over them


def test_curves_are_unchanged_when_every_run_learned(runs):
    learned = {"edges": runs["edges"], "random": matrix(np.linspace(0.2, 0.5, E), 3)}
    fig = curves_figure(learned, learning_of(learned))
    assert fig.to_json() == curves_figure(learned).to_json()
    assert legend_names(fig) == ["edges", "random"]
    assert "did not learn" not in fig.to_json()


def index_page(runs, learning, sets=False):
    summaries = {("tiny", 0, metric): phase_summary(m, PHASES) for metric, m in runs.items()}
    links = {
        ("tiny", 0): dict(
            curves="plots/curves.html",
            heatmaps={metric: f"plots/heatmap_{metric}.html" for metric in runs},
            layers={metric: f"plots/layers_{metric}.html" for metric in runs},
        )
    }
    if sets:  # the study keeps its Gram matrices (outputs.gram)
        links["tiny", 0]["sets"] = {metric: f"plots/sets_{metric}.html" for metric in runs}
    keyed = None if learning is None else {("tiny", 0, metric): status for metric, status in learning.items()}
    return index_html("s", "study: s\n", [("tiny", 0)], summaries, links, "claims.html", None, keyed)


def learned_column(page):
    """{metric: [the learned cell of each of its phase rows]} from the summary table."""
    out = {}
    for row in re.findall(r"<tr><td class=l>tiny</td>.*?</tr>", page):
        metric = re.search(r"<a href='plots/heatmap_\w+\.html'>(\w+)</a>", row).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        out.setdefault(metric, []).append(re.sub("</?b>", "", cells[-1]))
    return out


def test_index_names_the_run_that_did_not_learn_before_the_conclusions(runs):
    page = index_page(runs, learning_of(runs))
    assert "did not learn</h2>" in page
    finding = page.index("did not learn</h2>")
    assert finding < page.index("<h2>Conclusions</h2>")
    named = page[finding : page.index("<h2>Conclusions</h2>")]
    assert f"tiny, seed 0, metric color: {DID_NOT_LEARN}" in named
    assert "metric edges" not in named
    assert "<b>not interpretable</b>" in named and "confirmatory family" in named
    assert "<th class=l>learned</th>" in page
    assert learned_column(page) == {
        "color": ["no: test accuracy 0.10, chance 0.10"] * len(PHASES),
        "edges": ["yes"] * len(PHASES),
    }


def test_index_has_no_finding_when_every_run_learned(runs):
    learned = {"edges": runs["edges"], "random": matrix(np.linspace(0.2, 0.5, E), 3)}
    page = index_page(learned, learning_of(learned))
    assert "did not learn" not in page and "not interpretable" not in page
    assert learned_column(page) == {"edges": ["yes", "yes"], "random": ["yes", "yes"]}
    without = index_page(learned, None)  # no learning given: the table as it was
    assert "learned</th>" not in without and "did not learn" not in without
    rows = re.findall(r"<tr><td class=l>tiny</td>.*?</tr>", without)
    assert len(rows) == 4 and all(len(re.findall("<td", row)) == 10 for row in rows)  # ten columns, as before
    assert all(len(re.findall("<td", row)) == 11 for row in re.findall(r"<tr><td class=l>tiny</td>.*?</tr>", page))


def test_index_links_the_sets_pages_only_where_the_study_has_them(runs):
    """Each run's line lists its sets-of-batches pages beside its heatmaps and layers; without Gram matrices
    (outputs.gram: false) there are none, and the line reads as before."""
    line = lambda page: re.search(r"<li>tiny, seed 0: .*?</li>", page).group(0)  # noqa: E731
    with_sets = line(index_page(runs, None, sets=True))
    assert with_sets.endswith(
        "; sets of batches <a href='plots/sets_color.html'>color</a>, <a href='plots/sets_edges.html'>edges</a></li>"
    )
    without = line(index_page(runs, None))
    assert "sets" not in without and with_sets.startswith(without[: -len("</li>")])


def test_steps_write_the_finding_from_the_matrix_files(runs, tmp_path):
    metrics = list(runs)
    paths = []
    for metric, m in runs.items():
        paths.append(str(tmp_path / f"matrix_{metric}.h5"))
        write_matrix(paths[-1], metric, m, "{}")
    curves = tmp_path / "plots" / "curves.html"
    curves_page(paths, str(curves), metrics=metrics, phases=PHASES, n_classes=N_CLASSES, n_test=N_TEST)
    html = curves.read_text()
    assert "color (did not learn)" in html and f"color: {DID_NOT_LEARN}" in html
    assert "edges (did not learn)" not in html
    config = tmp_path / "config.yaml"
    config.write_text(study_config_text({"study": "s"}, ["s.yaml"], {}, []))
    study_index(
        paths,
        [str(tmp_path / "plots" / f"heatmap_{x}.html") for x in metrics],
        [str(tmp_path / "plots" / f"layers_{x}.html") for x in metrics],
        [str(curves)],
        str(tmp_path / "claims.html"),
        str(config),
        str(tmp_path / "index.html"),
        str(tmp_path / "summary.json"),
        study="s",
        runs=[["tiny", 0]],
        metrics=metrics,
        phases=PHASES,
        n_classes=N_CLASSES,
        n_test=N_TEST,
    )
    summary = {entry["metric"]: entry for entry in json.loads((tmp_path / "summary.json").read_text())}
    assert summary["color"]["learned"] is False and summary["edges"]["learned"] is True
    assert summary["color"]["test_accuracy_last_phase"] == pytest.approx(0.10)
    assert summary["edges"]["test_accuracy_last_phase"] == pytest.approx(np.linspace(0.3, 0.7, E)[3:].mean())
    assert summary["color"]["chance"] == pytest.approx(0.1)
    index = (tmp_path / "index.html").read_text()
    assert f"tiny, seed 0, metric color: {DID_NOT_LEARN}" in index
    assert "Read from: s.yaml" in index  # the effective config, with where it was read from
    assert learned_column(index)["color"] == ["no: test accuracy 0.10, chance 0.10"] * len(PHASES)


def test_the_pages_state_the_rule_that_decides_a_run_did_not_learn(runs):
    """The front page and the claims page say, in one sentence, when a run counts as learned: a fixed margin
    above chance, the same whatever the size of the test set."""
    assert html.escape(LEARNING_RULE) in index_page(runs, learning_of(runs))
    learned = {"edges": runs["edges"], "random": matrix(np.linspace(0.2, 0.5, E), 3)}
    assert "counts as learned" not in index_page(learned, learning_of(learned))  # no run failed: no rule to state
    rng = np.random.default_rng(0)
    status = learning_of(runs)
    matrices = {
        ("tiny", metric): [
            r._replace(seed=s, learning=status[metric])
            for s, r in enumerate(stats.simulate_study(rng, n_seeds=2, epochs=E, K=12))
        ]
        for metric in ("color", "edges")
    }
    rows = stats.analyse_study(matrices, PHASES, ["color", "edges"], n_perm=199, seed=0)
    page = claims_html(rows, "", [2], 0.05, 199)
    assert "Runs that did not learn:" in page and html.escape(LEARNING_RULE) in page
    assert "studentized" in page
