"""The HTML pages in a real browser: headless Chromium with no network, as a reader would open them offline.

Needs Debian's `chromium` and `chromium-driver` (see tests/browser.py). Without them the browser tests are
skipped on a workstation, and fail under CI (the CI environment variable set), so CI cannot skip silently.
"""

import json
import math
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser  # noqa: E402

from bestbatch.formats import Matrix  # noqa: E402
from bestbatch.plots import (
    SET_STYLES,
    curves_figure,
    heatmap_figure,
    layers_figure,
    phase_rows,  # noqa: E402
    phase_summary,
    row_zscore,
    sets_figure,
    write_figure,
    write_plotly_js,
)
from bestbatch.report import claims_html, index_html, profile_figure  # noqa: E402

E, K = 9, 12
LAYERS = ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "linear.weight", "linear.bias"]
PHASES = [(1, 1, 3, 0.1), (2, 4, 6, 0.01), (3, 7, 9, 0.001)]
METRIC = "intensity"
CELL = dict(epoch=5, batch=7, phase=2)  # a cell of the second phase's panel


def in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def synthetic_matrix(seed=0):
    """A gathered matrix like the workflow's, with distances that differ from epoch to epoch and batch to batch,
    split over the parameter tensors differently in each phase (sum_l layer_distance^2 = distance^2)."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(1, E + 1)
    batch = np.arange(K)
    scale = 10.0 ** -np.repeat([0, 1, 2], 3)[:, None]  # the gradient scale drops with the lr, phase by phase
    distance = scale * rng.uniform(0.5, 30.0, (E, K))
    per_phase = np.repeat(rng.uniform(0.01, 1, (3, len(LAYERS))), 3, 0)[:, None]  # each phase its own layers
    weight = rng.uniform(0.5, 1.5, (E, K, len(LAYERS))) * per_phase
    weight /= weight.sum(2, keepdims=True)
    return Matrix(
        epoch=epoch,
        batch=batch,
        distance=distance,
        layer_distance=distance[..., None] * np.sqrt(weight),
        layer_name=np.array(LAYERS),
        cosine=rng.uniform(-1.0, 1.0, (E, K)),
        batch_score_min=0.5 * batch - 2.3 + rng.uniform(0, 0.01, K),
        batch_score_mean=3.7 * batch + rng.uniform(0, 1, K),
        batch_score_max=3351.1 * batch + rng.uniform(0, 1, K),
    )  # > 1e4: .4g goes exponential


# --- how plotly.js prints numbers in a hovertemplate (d3-format), so the test can predict the label ------


def js_number(x, spec):
    """d3-format as plotly.js applies it, for the specs [,][.N][~](g|f|r) and '' (plain).

    g is JS toPrecision(N) (exponent form below 1e-6 and from 10^N), f is toFixed(N), r is N significant
    digits never in exponent form; ~ trims trailing zeros, ',' groups thousands, the minus is ASCII.
    """
    if spec == "":
        return str(int(x)) if float(x).is_integer() else repr(float(x))
    m = re.fullmatch(r"(,?)\.(\d+)(~?)([gfr])", spec)
    if not m:
        raise NotImplementedError(f"hover format {spec!r}: teach js_number about it")
    group, p, trim, kind = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    sign, x = ("-" if x < 0 else ""), abs(float(x))
    if kind == "f":
        out = f"{x:.{p}f}" if x < 1e21 else repr(x)  # JS toFixed falls back to String(x) from 1e21
    else:
        mantissa, exp = f"{x:.{p - 1}e}".split("e")
        e = int(exp) if x else 0
        if kind == "g" and (e < -6 or e >= p):  # toPrecision's exponent form, written the JS way (1.2e+4)
            out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
        elif kind == "g" or e < p:
            out = f"{x:.{max(p - 1 - e, 0)}f}"
        else:  # r: the rounded digits padded with zeros
            out = mantissa.replace(".", "") + "0" * (e - p + 1)
    if trim:
        head, _, tail = out.partition("e")
        if "." in head:
            head = head.rstrip("0").rstrip(".")
        out = head + ("e" + tail if tail else "")
    if group:
        whole, dot, rest = re.match(r"(\d*)(\.?)(.*)", out).groups()
        out = f"{int(whole):,}{dot}{rest}"
    if sign and float(re.sub(r"[^0-9.e+-]", "", out)) == 0:
        sign = ""  # d3 prints no minus for a value that rounds to zero
    return sign + out


def expected_hover(template, x, y, customdata):
    """The label lines plotly.js should draw for one cell of a trace with this hovertemplate."""

    def value(match):
        name, spec = match.group(1), match.group(2) or ""
        if name == "x":
            return js_number(x, spec)
        if name == "y":
            return js_number(y, spec)
        i = re.fullmatch(r"customdata\[(\d+)\]", name)
        if not i:
            raise NotImplementedError(f"hover field {name!r}")
        return js_number(customdata[int(i.group(1))], spec)

    text = re.sub(r"<extra>.*?</extra>", "", template)
    text = re.sub(r"%\{([^:}]+)(?::([^}]*))?\}", value, text)
    return text.split("<br>")


# --- fixtures: one browser and one set of pages for the module -------------------------------------------


@pytest.fixture(scope="module")
def br():
    missing = browser.missing()
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    if missing:
        message = (
            f"headless browser tests need {', '.join(missing)}; install with: {browser.INSTALL}"
            " (and selenium in the venv)"
        )
        if in_ci():
            pytest.fail(f"CI is set but {message}", pytrace=False)
        pytest.skip(message)
    with browser.Browser(width=1200, height=1000) as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The study's pages as the workflow lays them out: index.html, plots/heatmap_*.html, plots/training_curves.html."""
    root = tmp_path_factory.mktemp("study")
    m = synthetic_matrix()
    fig = heatmap_figure(METRIC, m, PHASES)
    heatmaps = {}
    for metric in (METRIC, "random"):
        heatmaps[metric] = root / "plots" / f"heatmap_{metric}.html"
        write_figure(fig if metric == METRIC else heatmap_figure(metric, synthetic_matrix(1), PHASES), heatmaps[metric])
    rng = np.random.default_rng(2)
    runs = {
        metric: Matrix(
            epoch=m.epoch,
            train_loss=np.exp(-0.2 * m.epoch)[:, None] * rng.uniform(1, 2, (E, K)),
            test_acc=np.linspace(0.2, 0.6, E) + rng.uniform(0, 0.05, E),
            noise_scale=64 * np.exp(0.5 * m.epoch) * rng.uniform(1, 2, E),
            gradient_diversity=rng.uniform(0.1, 2, E),
        )
        for metric in heatmaps
    }
    curves = root / "plots" / "training_curves.html"
    write_figure(curves_figure(runs), curves)
    layers = root / "plots" / f"layers_{METRIC}.html"
    write_figure(layers_figure(METRIC, m, PHASES), layers)
    bundle = root / "plotly.min.js"  # the study's one copy of plotly.js, as rule plotly_js writes it
    write_plotly_js(bundle)
    sets_table, cosine_by_phase = sets_of_batches(gram_matrix())
    sets = root / "plots" / f"sets_{METRIC}.html"
    write_figure(sets_figure(METRIC, sets_table, cosine_by_phase, PHASES), sets, bundle)
    claims = root / "claims.html"
    claims.write_text(claims_page())
    index = root / "index.html"
    rel = lambda path: os.path.relpath(path, root)  # noqa: E731
    summaries = {("tiny", 0, metric): phase_summary(m, PHASES) for metric in heatmaps}
    links = {
        ("tiny", 0): dict(
            curves=rel(curves),
            heatmaps={k: rel(v) for k, v in heatmaps.items()},
            layers={METRIC: rel(layers)},
            sets={METRIC: rel(sets)},
        )
    }
    index.write_text(index_html("synthetic", "study: synthetic\n", [("tiny", 0)], summaries, links, rel(claims)))
    return dict(
        m=m,
        fig=fig,
        heatmap=heatmaps[METRIC],
        curves=curves,
        index=index,
        n_curves=4 * len(runs),
        runs=runs,
        layers=layers,
        claims=claims,
        sets=sets,
        sets_table=sets_table,
        cosine_by_phase=cosine_by_phase,
        bundle=bundle,
    )


def gram_matrix(seed=4, dims=40):
    """A gathered matrix with the batch Gram matrices G = g g^T of random batch gradients (E, K, dims) that
    share a per-epoch mean direction, so the cosines are mostly positive and differ from batch to batch."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(E, K, dims)) + 1.5 * rng.normal(size=(E, 1, dims))
    return Matrix(
        epoch=np.arange(1, E + 1),
        batch=np.arange(K),
        phase=np.repeat([p for p, *_ in PHASES], 3),
        gram=g @ g.transpose(0, 2, 1),
    )


def sets_of_batches(m, draws=40):
    """What steps.plots.sets_page computes for its page: run_sets' table and the per-phase mean cosines."""
    import pandas as pd

    from bestbatch.sets import REGION_SETS, phase_cosines, run_sets
    from bestbatch.stats import region_mask

    regions = {name: region_mask(name, K) for name in REGION_SETS}
    table = pd.DataFrame(run_sets(m.epoch, m.phase, m.gram, np.random.default_rng(0), draws, regions))
    return table, {p: phase_cosines(m.gram, m.phase, p) for p, *_ in PHASES}


def claims_page():
    """The claims page of a simulated study: two seeds, every metric, a planted effect in one of them."""
    from bestbatch import stats

    rng = np.random.default_rng(5)
    metrics = ["intensity", "color", "edges", "lpips", "random"]
    matrices = {
        ("tiny", metric): stats.simulate_study(
            rng, n_seeds=2, epochs=E, K=K, effect=-1.0 if metric == "intensity" else 0.0, region="upper_quartile"
        )
        for metric in metrics
    }
    rows = stats.analyse_study(matrices, PHASES, metrics, n_perm=99, seed=0)
    return claims_html(rows, profile_figure(rows, PHASES), [2], 0.05, 99, ["a note the page must show"])


def offline_urls(urls):
    return [u for u in urls if not u.startswith(("file:", "data:"))]


# --- the heatmap -------------------------------------------------------------------------------------------


def test_heatmap_loads_offline_with_one_trace_per_phase(br, pages):
    br.open(pages["heatmap"])
    assert br.n_traces() == len(PHASES)
    assert br.trace_names() == [f"phase {p}" for p, *_ in PHASES]
    urls = br.requested_urls()
    assert urls and urls[0] == pages["heatmap"].resolve().as_uri()
    assert offline_urls(urls) == [], "the page must load nothing but file: and data: URLs"
    assert br.console_errors() == []


def test_heatmap_hover_shows_the_cell(br, pages):
    m, fig = pages["m"], pages["fig"]
    br.open(pages["heatmap"])
    trace = fig.data[CELL["phase"] - 1]
    subplot = (trace.xaxis or "x") + (trace.yaxis or "y")
    assert subplot == "x2y2"
    lines = br.hover(CELL["batch"], CELL["epoch"], subplot)

    rows = dict((p, r) for p, *_, r in phase_rows(m.epoch, PHASES))[CELL["phase"]]
    row = int(np.flatnonzero(m.epoch[rows] == CELL["epoch"])[0])  # in the panel
    col = int(np.flatnonzero(m.batch == CELL["batch"])[0])
    r = rows[row]  # in the whole matrix
    e, b = int(m.epoch[r]), int(m.batch[col])
    d, c, z = m.distance[r, col], m.cosine[r, col], row_zscore(m.distance)[r, col]
    lo, mean, hi = m.batch_score_min[col], m.batch_score_mean[col], m.batch_score_max[col]

    text = "\n".join(lines)
    assert "epoch 5" in lines[0] and "batch 7" in lines[0], lines
    # each of the cell's numbers, printed as the figure's hovertemplate formats it
    specs = {int(i): spec for i, spec in re.findall(r"%\{customdata\[(\d+)\]:?([^}]*)\}", trace.hovertemplate)}
    numbers = re.findall(r"-?\d(?:[\d.]|,(?=\d{3}))*(?:e[+-]\d+)?", text)
    for i, (name, x) in enumerate(
        [("distance", d), ("cosine", c), ("z-score", z), ("min", lo), ("mean", mean), ("max", hi)]
    ):
        assert i in specs, f"the hover text has no {name} (customdata[{i}])"
        assert js_number(x, specs[i]) in numbers, f"{name} {js_number(x, specs[i])} not in the hover label {lines}"
    # and the whole label, line by line, as the figure's hovertemplate says it should read
    assert lines == expected_hover(trace.hovertemplate, b, e, trace.customdata[row][col])


def test_heatmap_hover_each_phase_panel(br, pages):
    """Every panel answers hover on its own axes, with its own epochs."""
    br.open(pages["heatmap"])
    for k, (_phase, _first, last, _lr) in enumerate(PHASES):
        subplot = "xy" if k == 0 else f"x{k + 1}y{k + 1}"
        lines = br.hover(0, last, subplot)
        assert lines and lines[0].startswith(f"epoch {last}, batch 0"), (subplot, lines)


def test_zscore_button_switches_to_per_epoch_zscores(br, pages):
    m = pages["m"]
    br.open(pages["heatmap"])
    parts = phase_rows(m.epoch, PHASES)
    for i, (*_, rows) in enumerate(parts):
        np.testing.assert_allclose(br.trace_z(i), m.distance[rows], rtol=0, atol=1e-12)
    br.click_button("z-score within epoch")
    z = row_zscore(m.distance)
    for i, (*_, rows) in enumerate(parts):
        got = br.trace_z(i)
        assert got.shape == (len(rows), K)
        np.testing.assert_allclose(got, z[rows], rtol=0, atol=1e-6)
    br.click_button("distance")
    for i, (*_, rows) in enumerate(parts):
        np.testing.assert_allclose(br.trace_z(i), m.distance[rows], rtol=0, atol=1e-12)
    assert offline_urls(br.requested_urls()) == []


def test_zscore_button_gives_every_panel_the_same_diverging_scale(br, pages):
    br.open(pages["heatmap"])
    axes = ["coloraxis"] + [f"coloraxis{i + 1}" for i in range(1, len(PHASES))]
    scales = lambda: br.js("return arguments[0].map(a => JSON.stringify(gd._fullLayout[a].colorscale));", axes)
    distance = scales()
    assert len(set(distance)) == 1, "the distance view uses one colour scale in every panel"
    br.click_button("z-score within epoch")
    zscore = scales()
    assert zscore[0] != distance[0], "the z-score view switches to its own (diverging) colour scale"
    assert len(set(zscore)) == 1, f"every panel shows z-scores in the same colours, got {zscore}"


# --- the other pages ----------------------------------------------------------------------------------------


def test_curves_page_loads_offline(br, pages):
    """Four panels, one line per metric in each: loss, accuracy, B_simple (log scale) and gradient diversity."""
    br.open(pages["curves"])
    assert br.n_traces() == pages["n_curves"]
    assert sorted(set(br.trace_names())) == [METRIC, "random"]
    axes = br.js("return gd.data.map(t => (t.xaxis || 'x') + (t.yaxis || 'y'));")
    assert sorted(set(axes)) == ["x2y2", "x3y3", "x4y4", "xy"] and all(axes.count(a) == 2 for a in set(axes))
    assert br.js("return [gd._fullLayout.yaxis.type, gd._fullLayout.yaxis3.type];") == ["log", "log"]
    names = br.trace_names()
    for i, (metric, panel) in enumerate((n, a) for n, a in zip(names, axes)):
        m = pages["runs"][metric]
        want = {"x3y3": m.noise_scale, "x4y4": m.gradient_diversity}.get(panel)
        if want is not None:
            got = br.js("const y = gd.data[arguments[0]].y; return y.bdata !== undefined ? y : Array.from(y);", i)
            np.testing.assert_allclose(browser.decode_typed_array(got).astype(float), want, rtol=1e-12)
    assert offline_urls(br.requested_urls()) == []
    assert br.console_errors() == []


def expected_shares(m):
    """(L, phases): per phase, the mean over its epochs and batches of layer_distance^2 / distance^2."""
    out = []
    for *_, rows in phase_rows(m.epoch, PHASES):
        ratio = m.layer_distance[rows] ** 2 / m.distance[rows][..., None] ** 2
        out.append(ratio.reshape(-1, len(LAYERS)).mean(0))
    return np.stack(out, 1)


def test_layers_page_loads_offline_with_one_heatmap_of_tensors_by_phase(br, pages):
    br.open(pages["layers"])
    assert br.n_traces() == 1
    assert br.js("return gd.data[0].type;") == "heatmap"
    assert br.js("return Array.from(gd.data[0].y);") == LAYERS  # the tensors in network order
    assert br.js("return Array.from(gd.data[0].x);") == [f"phase {p}" for p, *_ in PHASES]
    z = br.trace_z(0)
    want = expected_shares(pages["m"])
    np.testing.assert_allclose(z, want, rtol=1e-12)
    np.testing.assert_allclose(z.sum(0), 1, rtol=1e-12)  # each phase's shares add up to the whole distance
    assert np.ptp(want, 1).max() > 0.05, "the synthetic phases differ, so the page has something to show"
    top, bottom = br.js("const a = gd._fullLayout.yaxis; return [a.l2p(0), a.l2p(arguments[0])];", len(LAYERS) - 1)
    assert top < bottom, "the first tensor of the network is drawn on top"
    urls = br.requested_urls()
    assert urls and urls[0] == pages["layers"].resolve().as_uri()
    assert offline_urls(urls) == []
    assert br.console_errors() == []


def test_layers_page_hover_names_the_tensor_and_its_share(br, pages):
    br.open(pages["layers"])
    want = expected_shares(pages["m"])
    layer, phase = 3, 1  # layer1.0.conv1.weight in phase 2
    lines = br.hover(phase, layer)
    text = "\n".join(lines)
    assert lines and lines[0] == LAYERS[layer], lines
    _, first, last, lr = PHASES[phase]
    assert f"phase {phase + 1}: epochs {first}-{last}, lr {lr:g}" in text, lines
    assert f"{100 * want[layer, phase]:.2f}%" in text, (want[layer, phase], lines)


# --- the sets of batches ----------------------------------------------------------------------------------


def test_sets_page_loads_offline_with_its_panels(br, pages):
    """Per phase, the error against the set size m (log axes) and the K x K cosine heatmap; below, the effective
    rank per epoch; plotly.js from the study's one copy, nothing from outside."""
    br.open(pages["sets"])
    n = len(PHASES)
    axes = br.js("return gd.data.map(t => [t.type, (t.xaxis || 'x') + (t.yaxis || 'y'), t.name || null]);")
    lines = [(a, name) for kind, a, name in axes if kind == "scatter" and a != f"x{2 * n + 1}y{2 * n + 1}"]
    heatmaps = [a for kind, a, _ in axes if kind == "heatmap"]
    rank = [a for kind, a, name in axes if name == "effective rank"]
    panels = ["xy"] + [f"x{i}y{i}" for i in range(2, n + 1)]  # the first row: one panel per phase
    assert sorted({a for a, _ in lines}) == sorted(panels) and len(axes) == len(lines) + n + 1
    table = pages["sets_table"]
    greedy = SET_STYLES["greedy"][0]
    for panel, (phase, *_) in zip(panels, PHASES):  # every phase draws the greedy set, the closest, random sets
        assert {label for label, *_ in SET_STYLES.values()} <= {name for a, name in lines if a == panel}, panel
        i = axes.index(["scatter", panel, greedy])
        want = table[(table.phase == phase) & (table.set == "greedy")].groupby("m")["relative_error"].mean()
        x, y = (browser.decode_typed_array(a) for a in br.js("const t = gd.data[arguments[0]]; return [t.x, t.y];", i))
        np.testing.assert_array_equal(x, want.index)  # the phase's mean over its epochs, per set size
        np.testing.assert_allclose(y, want.values, rtol=1e-12)
    assert heatmaps == [f"x{n + i}y{n + i}" for i in range(1, n + 1)]  # one cosine heatmap per phase
    assert rank == [f"x{2 * n + 1}y{2 * n + 1}"]
    types = br.js(
        "return arguments[0].map(i => [gd._fullLayout['xaxis' + i].type, gd._fullLayout['yaxis' + i].type]);",
        ["", *[str(i) for i in range(2, 2 * n + 2)]],
    )
    assert types[:n] == [["log", "log"]] * n, types  # error against m: log-log
    assert all(t == "linear" for pair in types[n:] for t in pair), types
    for i, phase in enumerate(p for p, *_ in PHASES):
        index = br.js("return gd.data.findIndex(t => t.yaxis === arguments[0]);", f"y{n + i + 1}")
        np.testing.assert_allclose(br.trace_z(index), pages["cosine_by_phase"][phase], rtol=1e-12)
    ranks = table.groupby("epoch")["effective_rank"].first()
    x, y = (browser.decode_typed_array(a) for a in br.js("const t = gd.data.at(-1); return [t.x, t.y];"))
    np.testing.assert_array_equal(x, ranks.index)
    np.testing.assert_allclose(y, ranks.values, rtol=1e-12)
    urls = br.requested_urls()
    assert urls and urls[0] == pages["sets"].resolve().as_uri()
    assert pages["bundle"].resolve().as_uri() in urls, "the page loads the study's plotly.js by a relative path"
    assert offline_urls(urls) == []
    assert br.console_errors() == []


def test_sets_page_hover_names_the_two_batches_and_their_cosine(br, pages):
    br.open(pages["sets"])
    n, phase, row, col = len(PHASES), 2, 3, 9
    assert br.hover(col, row, f"x{n + phase}y{n + phase}")
    # the label's own text and, beside it, the trace's name (the hovertemplate's <extra>)
    label = br.js(
        "const box = document.querySelector('.hoverlayer .hovertext');"
        "return ['nums', 'name'].map(c => Array.from(box.querySelectorAll('text.' + c + ' tspan.line, text.' + c),"
        " t => t.textContent).filter(s => s).at(0));"
    )
    cos = pages["cosine_by_phase"][phase][row, col]
    assert 1e-3 < abs(cos) < 1 - 1e-3, "the synthetic cosine is neither 0 nor 1: the label shows this cell's"
    assert label == [f"batch {row} and {col}: cos {js_number(cos, '.3f')}", f"phase {phase}"], label


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href"))


def test_index_links_resolve_to_files(pages):
    """No browser needed: every link on the index page points at a page that exists next to it."""
    parser = _Links()
    parser.feed(pages["index"].read_text())
    root = pages["index"].parent
    assert parser.hrefs and None not in parser.hrefs
    for href in parser.hrefs:
        assert "://" not in href and not href.startswith("/"), f"{href}: the index must link relatively"
        assert (root / href).is_file(), f"{href}: no such file next to the index"
    assert {
        "claims.html",
        "plots/training_curves.html",
        f"plots/layers_{METRIC}.html",
        f"plots/heatmap_{METRIC}.html",
        f"plots/sets_{METRIC}.html",
    } <= set(parser.hrefs)
    assert math.isfinite(phase_summary(pages["m"], PHASES)[0]["spearman"])


def test_claims_page_loads_offline_with_its_verdicts_and_profiles(br, pages):
    br.open(pages["claims"])
    assert br.driver.execute_script("return document.querySelector('.js-plotly-plot').data.length") > 0
    text = br.driver.execute_script("return document.body.innerText")
    assert "Verdict per claim" in text and "a note the page must show" in text
    verdicts = br.driver.execute_script(
        "return Array.from(document.querySelectorAll('table')[0].querySelectorAll('tr'), r => r.className)"
    )
    assert set(verdicts[1:]) <= {"supported", "contradicted", "inconclusive"} and len(verdicts) == 1 + 4
    assert offline_urls(br.requested_urls()) == []


def test_index_page_links_open_in_the_browser(br, pages):
    """The written index page, in the browser: its links are file: URLs of pages that exist, and it loads offline."""
    br.open(pages["index"], plot=False)
    hrefs = br.driver.execute_script("return Array.from(document.querySelectorAll('a'), a => a.href);")
    assert hrefs
    for href in hrefs:
        assert href.startswith("file://"), href
        assert Path(unquote(urlparse(href).path)).is_file(), href
    assert offline_urls(br.requested_urls()) == []


def test_selection_page_loads_offline_with_one_line_per_arm(br, tmp_path):
    """The selection experiment's page from simulated curves: 2 seeds, 4 arms, one budget."""
    from bestbatch.formats import write_curve
    from bestbatch.steps.selection import summarise_selection

    arms = ["all.intensity", "drop_extremes.intensity", "random_subset.drop_extremes.intensity", "shuffled"]
    rng = np.random.default_rng(3)
    paths = []
    for seed in (0, 1):
        for arm in arms:
            steps = np.arange(10, 101, 10)
            speed = 0.03 if arm == "drop_extremes.intensity" else 0.02
            acc = 1 - np.exp(-speed * steps) + rng.uniform(0, 0.02, steps.size)
            rows = [
                dict(
                    step=int(s),
                    phase=1 + (s > 50),
                    lr=0.1,
                    test_loss=1 - a,
                    test_acc=float(a),
                    train_loss=1.0,
                    train_steps=10,
                )
                for s, a in zip(steps, acc)
            ]
            paths.append(tmp_path / f"{seed}_{arm}.h5")
            write_curve(
                paths[-1], rows, dict(arm=arm, model="tiny", seed=seed, budget=1.0, total_steps=100, provenance="{}")
            )
    power = tmp_path / "power.json"  # what the selection_power job writes (selection_stats.recommend_seeds)
    power.write_text(
        json.dumps(dict(seeds=12, power={"2.0": 0.9, "1.5": 0.6}, seeds_needed=6, n_experiments=200, max_seeds=40))
    )
    summarise_selection(
        paths,
        tmp_path / "selection.csv",
        tmp_path / "selection.html",
        runs=[["tiny", 0], ["tiny", 1]],
        budgets=["1"],
        arms=arms,
        target_fraction=0.9,
        alpha=0.05,
        n_classes=10,
        n_test=512,
        n_train=1000,
        batch_size=64,
        power=power,
    )
    br.open(tmp_path / "selection.html")
    assert br.driver.execute_script("return document.querySelector('.js-plotly-plot').data.length") == len(arms)
    text = br.driver.execute_script("return document.body.innerText")
    assert "The paper's recommendations" in text and "drop_extremes.intensity vs all.intensity" in text
    assert "Seeds for power: 12 recommended." in text and "this study has 2, fewer than recommended" in text
    assert offline_urls(br.requested_urls()) == []
