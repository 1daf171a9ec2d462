"""The study's pages that span runs: the front page (every model, seed and metric) and the claims page."""

import html
import math

_STYLE = """<style>body{font-family:sans-serif;max-width:78em;margin:2em auto;line-height:1.4;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}
.supported{background:#d9f2d9}.contradicted{background:#f8d7d7}.inconclusive{background:#f2f2f2}.not-interpretable{background:#fde9c8}
.control{color:#555;font-style:italic}</style>"""


def page(title, body):
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head>'
        f"<body>\n{body}\n</body></html>\n"
    )


def _a(href, text):
    return f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"


def proxies_section(rows, link):
    """The front page's section on cheap proxies: rows of bestbatch.proxies.proxy_table (or proxies.csv), one table
    row per model, metric, proxy and phase; link: href of proxies.csv."""
    cells = {}
    for r in rows:
        key = (r["model"], r["metric"], r["proxy"], r["phase"])
        cells.setdefault(key, dict(epochs=f"{r['first_epoch']}-{r['last_epoch']}", tensors=r["tensors"]))
        cells[key].update({r["statistic"]: r, "m": r["m"], "K": r["K"]})

    def estimate(r):
        if r is None:
            return "<td></td><td></td>"
        interval = f"{_num(r['lo'])} to {_num(r['hi'])}" if r["lo"] == r["lo"] else "one seed"
        return f"<td>{_num(r['mean'])}</td><td>{interval}</td>"

    def named(proxy, tensors):  # tensors: "" (or NaN, read back from the CSV) for a proxy that reads none
        return html.escape(proxy) + (f" ({html.escape(tensors)})" if isinstance(tensors, str) and tensors else "")

    table = "".join(
        f"<tr><td class=l>{html.escape(model)}</td><td class=l>{html.escape(metric)}</td>"
        f"<td class=l>{named(proxy, c['tensors'])}</td><td>{phase}</td><td>{c['epochs']}</td>"
        f"{estimate(c.get('spearman'))}{estimate(c.get('overlap'))}<td>{_num(c['m'] / c['K'])} ({c['m']} of "
        f"{c['K']})</td><td>{(c.get('spearman') or c.get('overlap'))['n_seeds']}</td></tr>"
        for (model, metric, proxy, phase), c in cells.items()
    )
    return f"""<h2>Cheap proxies against the exact distance</h2>
<p>Does a signal that costs nothing beyond training rank an epoch's batches as the distance
||g<sub>k</sub> &minus; g&#772;|| does? <code>last_layer</code>: the distance over the tensors of the network's last
module (named beside it; what GradMatch and CRAIG use); <code>batch_loss</code>: the batch's training loss as training met it in the epoch;
<code>gradient_norm</code>: ||g<sub>k</sub>||. Every proxy ranks <b>ascending</b>: its smallest value is the batch it
predicts closest. Per epoch, Spearman &rho; of the proxy with the distance (positive: they agree) and the top-m overlap,
the share of the m closest batches that the proxy's first m hold, with m = max(1, K // 4), a quarter of the batches (the
paper's upper quartile); a proxy that ranks at random overlaps m/K (chance). A seed's value is the mean over the phase's
epochs; the table gives the mean over seeds with a 95% t-interval over seeds. Descriptive: no p-values, no verdicts.
{_a(link, "proxies.csv")}</p>
<table><tr><th class=l>model</th><th class=l>metric</th><th class=l>proxy</th><th>phase</th><th>epochs</th>
<th>Spearman &rho;</th><th>95% interval</th><th>top-m overlap</th><th>95% interval</th><th>overlap by chance, m/K</th>
<th>seeds</th></tr>{table}</table>"""


def index_html(
    study, config_yaml, runs, summaries, links, claims_link, selection_link=None, learning=None, proxies=None
):
    """The study's front page.

    runs: [(model, seed)]; summaries: {(model, seed, metric): [per-phase summary dicts]};
    links: {(model, seed): dict(curves=href, heatmaps={metric: href}, layers={metric: href}, sets={metric: href})}
    (sets, optional: the sets-of-batches pages, where the study keeps its Gram matrices); claims_link: href of
    the claims page; learning: {(model, seed, metric): stats.Learning}, optional: the runs that did not learn are
    named above the conclusions and every row of the summary says whether its run learned; proxies, optional:
    (rows of proxies.csv, its href) for proxies_section."""
    from .stats import LEARNING_RULE

    learning = learning or {}

    def learned(key):
        status = learning.get(key)
        if status is None:
            return ""
        if status.learned:
            return "<td class=l>yes</td>"
        return f"<td class=l><b>no: test accuracy {status.accuracy:.2f}, chance {status.chance:.2f}</b></td>"

    failed = [(key, status) for key, status in learning.items() if not status.learned]
    not_learned = (
        "<div style='border:2px solid #b00000;background:#fbeaea;padding:.2em 1em;margin:1em 0'>"
        "<h2>Runs in which the network did not learn</h2><ul>"
        + "".join(
            f"<li>{html.escape(model)}, seed {seed}, metric {html.escape(metric)}: "
            f"{html.escape(status.describe())}</li>"
            for (model, seed, metric), status in failed
        )
        + "</ul><p>Under these orders the network did not learn: that is a finding in itself. "
        + html.escape(LEARNING_RULE)
        + " The gradients of a network that does not learn say nothing about which batches help it learn, so each "
        "such run is left out of its claim rows, and where no seed of a model and metric learned, those rows are "
        "<b>not interpretable</b> and left out of the confirmatory family (the claims page says so).</p></div>"
        if failed
        else ""
    )
    rows = []
    for model, seed in runs:
        heatmaps = links[model, seed]["heatmaps"]
        for metric, href in heatmaps.items():
            for s in summaries[model, seed, metric]:
                rows.append(
                    f"<tr><td class=l>{html.escape(model)}</td><td>{seed}</td><td class=l>{_a(href, metric)}</td>"
                    f"<td>{s['phase']}</td><td>{s['epochs']}</td><td>{s['lr']:g}</td><td>{s['mean_distance']:.4g}</td>"
                    f"<td>{s['mean_cosine']:.3f}</td><td>{s['best_batch']} ({100 * s['best_quantile']:.0f}%)</td>"
                    f"<td>{s['spearman']:+.2f}</td>{learned((model, seed, metric))}</tr>"
                )
    run_list = "".join(
        f"<li>{html.escape(model)}, seed {seed}: {_a(links[model, seed]['curves'], 'training curves')}; heatmaps "
        + ", ".join(_a(href, metric) for metric, href in links[model, seed]["heatmaps"].items())
        + "; layers "
        + ", ".join(_a(href, metric) for metric, href in links[model, seed].get("layers", {}).items())
        + (
            "; sets of batches " + ", ".join(_a(href, metric) for metric, href in links[model, seed]["sets"].items())
            if links[model, seed].get("sets")
            else ""
        )
        + "</li>"
        for model, seed in runs
    )
    learned_th, table = ("<th class=l>learned</th>" if learning else ""), "".join(rows)
    body = f"""<h1>bestbatch study <code>{html.escape(study)}</code></h1>
<p>Which mini-batch best approximates the full-batch gradient, and how does that change over training?
Every training image was scored by a metric, the sorted set was cut into a fixed sequence of mini-batches, and in
every epoch the gradient g<sub>k</sub> of each batch at the epoch-start parameters was compared with their mean, the
full gradient. A heatmap cell is the distance ||g<sub>k</sub> &minus; g&#772;||<sub>2</sub>: dark (low) cells are the
batches whose gradient is closest to the full gradient. Each run is one model, one seed and one metric's order.</p>
{not_learned}
<h2>Conclusions</h2>
<p>{_a(claims_link, "The paper's claims, tested")}: for every claim an effect size with its confidence interval over
the seeds, a p-value from a permutation null (Holm-corrected over the study) and a verdict: supported, contradicted
or inconclusive.</p>
{
        f"<p>{_a(selection_link, 'Do the best mini-batches train faster?')}: the paper's recommendations as training "
        f"runs against controls, with equal step budgets, and a verdict per recommendation.</p>"
        if selection_link
        else ""
    }
{proxies_section(*proxies) if proxies else ""}
<h2>Runs</h2><ul>{run_list}</ul>
<h2>Summary by run and training phase</h2>
<p>Closest batch: the batch position with the lowest mean z-scored distance in the phase (in % of the order, low
&rarr; high score). Spearman &rho;: rank correlation of batch position with that distance; positive means batches of
low scores are closer to the full gradient, negative means high scores are. One run's &rho; is descriptive: the
claims page says what the seeds support. The <code>random</code> order is the control.</p>
<table><tr><th class=l>model</th><th>seed</th><th class=l>metric</th><th>phase</th><th>epochs</th><th>lr</th>
<th>mean distance</th><th>mean cosine</th><th>closest batch</th><th>Spearman &rho;</th>{learned_th}</tr>{table}</table>
<h2>Configuration</h2><pre>{html.escape(config_yaml)}</pre>"""
    return page(f"bestbatch: {study}", body)


def profile_figure(rows, phases, bundle=None, page_path=None):
    """The positional profiles: mean within-epoch z-score per decile of batch position with its interval,
    one panel per phase, one line per (model, metric). bundle, page_path: the study's plotly.js and the page's
    path (bestbatch.plots.plotly_scripts); without them plotly.js is inlined."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    deciles = [r for r in rows if r["kind"] == "profile" and r["statistic"] == "decile"]
    fig = make_subplots(
        rows=1,
        cols=len(phases),
        shared_yaxes=True,
        subplot_titles=[f"phase {p}: epochs {a}-{b}" for p, a, b, _ in phases],
    )
    lines = sorted({(r["model"], r["metric"]) for r in deciles})
    for i, (model, metric) in enumerate(lines):
        colour = f"hsl({int(360 * i / max(len(lines), 1))},60%,45%)"
        for j, (phase, *_rest) in enumerate(phases):
            pts = sorted(
                (r for r in deciles if (r["model"], r["metric"], r["phase"]) == (model, metric, phase)),
                key=lambda r: r["bin"],
            )
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["bin"] + 1 for r in pts],
                    y=[r["effect"] for r in pts],
                    mode="lines+markers",
                    name=f"{model}: {metric}",
                    legendgroup=f"{model}:{metric}",
                    showlegend=j == 0,
                    line=dict(color=colour),
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[r["ci_hi"] - r["effect"] for r in pts],
                        arrayminus=[r["effect"] - r["ci_lo"] for r in pts],
                    ),
                    hovertemplate=f"{model}, {metric}, phase {phase}<br>decile %{{x}}: mean z %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=j + 1,
            )
    fig.update_xaxes(title_text="decile of batch position (low → high score)", dtick=1)
    fig.update_yaxes(title_text="mean within-epoch z-score (negative: closer)", row=1, col=1)
    fig.update_layout(template="plotly_white", height=480, title="Where the closest batches sit, by phase")
    from .plots import figure_html

    return figure_html(fig, bundle, page_path, full_html=False)


VERDICT_WORDS = {
    "supported": "the data show the claimed pattern: the Holm-corrected p-value is below alpha and the effect has the "
    "claimed sign",
    "contradicted": "the data show the opposite pattern, significantly",
    "inconclusive": "the data neither support nor contradict the claim at this level: no significant effect (too few "
    "seeds or batches, or no effect). It is not evidence that there is no effect",
    "not interpretable": "the network did not learn under this order (its test accuracy over the last phase did not "
    "rise far enough above chance: see the rule under Runs that did not learn), so its gradients say nothing about "
    "training; the row is left out of the confirmatory family",
}


def _num(x, spec=".3f"):
    return "" if x is None or x != x else format(x, spec)


def _interval(lo, hi, level, spec=".3f"):
    from .stats import fmt_level

    if lo is None or lo != lo:
        return ""
    bounds = (
        f"{_num(lo, spec)} to {_num(hi, spec)}" if abs(lo) != float("inf") and abs(hi) != float("inf") else "unbounded"
    )
    return f"{bounds} ({fmt_level(level)})"


def dropped_images_note(n_train, batch_size):
    """What the last partial batch leaves out, in words (empty when the batches hold every image)."""
    K, left = n_train // batch_size, n_train % batch_size
    if not left:
        return ""
    return (
        f"<p><b>Images in no batch:</b> {n_train:,} images in batches of {batch_size} make K = {K} batches; the last "
        f"{left} images of every order (its {left} highest-scoring images) fall in the dropped partial batch, so "
        f"they are in no batch, no full gradient g&#772; and no policy. A region such as the highest 10% is the "
        f"highest 10% of the K batches, which stops {left} images short of the top of the order.</p>"
    )


def claims_html(rows, figure_html, n_seeds, alpha, permutations, notes=(), n_train=None, batch_size=None):
    """The claims page: one verdict per (model, claim) in plain words, every test behind it, the controls."""
    from .stats import FAMILIES, LEARNING_RULE

    summaries = [r for r in rows if r["kind"] == "summary"]
    tests = [r for r in rows if r["kind"] in ("claim", "control")]
    assoc = [r for r in rows if r["kind"] == "association"]
    set_tests = [r for r in rows if r["kind"] == "set"]
    not_learned = sorted({(str(r["model"]), r["metric"], r["not_learned"]) for r in tests if r.get("not_learned")})
    summary_rows = "".join(
        f"<tr class='{r['verdict'].replace(' ', '-')}'><td class=l>{html.escape(str(r['model']))}</td>"
        f"<td class=l>{html.escape(r['claim'])}</td><td class=l><b>{r['verdict']}</b></td>"
        f"<td class=l>{html.escape(r['sentence'])}</td></tr>"
        for r in summaries
    )
    test_rows = "".join(
        f"<tr class='{'control' if r['control'] else r['verdict'].replace(' ', '-')}'>"
        f"<td class=l>{html.escape(str(r['model']))}</td><td class=l>{html.escape(r['claim'])}</td>"
        f"<td class=l>{html.escape(r['metric'])}</td><td>{r['phase']}</td><td class=l>{r['family'] or 'none'}</td>"
        f"<td>{_num(r['effect'])}</td><td>{_interval(r['ci_lo'], r['ci_hi'], r['level'])}</td>"
        f"<td>{_num(r['p'], '.4f')}</td><td>{_num(r['p_holm'], '.4f')}</td><td class=l>{r['verdict']}</td>"
        f"<td class=l>{html.escape(r['sentence'])}</td></tr>"
        for r in tests
    )
    assoc_rows = "".join(
        f"<tr><td class=l>{html.escape(str(r['model']))}</td><td class=l>{html.escape(r['metric'])}</td><td>{r['phase']}</td>"
        f"<td class=l>{html.escape(r['statistic'])}</td><td>{_num(r['effect'], '+.3f')}</td><td>{_num(r['p'], '.4f')}</td>"
        f"<td>{_num(r['p_holm'], '.4f')}</td></tr>"
        for r in assoc
    )
    set_rows = "".join(
        f"<tr><td class=l>{html.escape(str(r['model']))}</td><td class=l>{html.escape(r['metric'])}</td><td>{r['phase']}</td>"
        f"<td class=l>{html.escape(r['region'])}</td><td>{_num(math.exp(r['effect']) if r['effect'] == r['effect'] else r['effect'])}</td>"
        f"<td>{_num(r['p'], '.4f')}</td><td>{_num(r['p_holm'], '.4f')}</td><td class=l>{html.escape(r['sentence'])}</td></tr>"
        for r in set_tests
    )
    set_section = (
        f"""<h2>The paper's regions as sets of batches (exploratory)</h2>
<p>Does a region, taken as one set of batches, approximate the full gradient better than random sets of the same
size? From each epoch's exact batch Gram matrix: the set's error ||mean over the set of g_k &minus; g&#772;|| against
the root mean square error of all random sets of its size (exact), each epoch's gradient scale divided out, over the
phase's epochs and the seeds. The <b>ratio</b> is below 1 where the region is the better set. The p-value relabels
the batch positions as the claims do (the relabelled region is a random set of the same size); Holm p within the
exploratory family; no interval is shown. What is relabelled is the difference from random sets' mean over a standard
deviation that gives the region and the rest each their own spread, so a region whose batches vary more in size is not
taken for a better set by chance; where they are far more variable in size than the rest's, it can still be, somewhat
more often than alpha (tests/test_set_claims.py measures it): read these rows as leads. Each run's sets page has the
greedy set (and after single swaps), the closest batches and random sets at every size.</p>
<table><tr><th class=l>model</th><th class=l>metric</th><th>phase</th><th class=l>region</th><th>ratio</th><th>p</th>
<th>Holm p</th><th class=l>in plain words</th></tr>{set_rows}</table>"""
        if set_tests
        else ""
    )
    seeds = ", ".join(map(str, n_seeds))
    one_seed = (
        (
            "<p><b>One seed:</b> the error bars of the profile figure come from resampling epochs, which understates "
            "the uncertainty (a batch that is close in one epoch tends to stay close); the tests and their intervals "
            "do not depend on it.</p>"
        )
        if 1 in n_seeds
        else ""
    )
    learned_note = (
        "<p><b>Runs that did not learn:</b></p><ul>"
        + "".join(
            f"<li>{html.escape(model)}, {html.escape(metric)}: {html.escape(words)}.</li>"
            for model, metric, words in not_learned
        )
        + "</ul><p>A fixed, sorted order can stop a network from learning (an order that groups classes into "
        "batches): that is a finding. "
        + html.escape(LEARNING_RULE)
        + " Such a run is left out of its rows; where no seed learned, the rows are <b>not interpretable</b> and "
        "outside both families.</p>"
        if not_learned
        else ""
    )
    family_list = "".join(
        f"<li><b>{name}</b> ({sum(r['family'] == name and r['p'] == r['p'] for r in rows)} tests): {html.escape(words)}.</li>"
        for name, words in FAMILIES.items()
    )
    note_list = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    verdict_list = "".join(f"<li><b>{v}</b>: {html.escape(w)}.</li>" for v, w in VERDICT_WORDS.items())
    dropped = dropped_images_note(n_train, batch_size) if n_train and batch_size else ""
    body = f"""<h1>The paper's claims, tested</h1>
<p>Each claim of the paper's section 5 is restated as a test on the within-epoch z-scored distances (each epoch's row
of the distance matrix standardised, so the epoch's gradient scale is divided out; negative z is closer to the full
gradient). The <b>effect</b> is the difference in mean z between a region of batch positions and the rest, in units
of the epoch's standard deviation, averaged over the seeds ({seeds} per model and metric). The <b>p-value</b> comes
from {permutations:,} relabellings of the batch positions, one relabelling shared by all epochs of the phase and all
seeds (a batch that is close in one epoch tends to stay close, and the seeds of a deterministic order train on the
same batches: relabelling each epoch or each seed on its own would reject far too often). What is relabelled is the
<b>studentized</b> contrast, the difference divided by its Welch standard error (each group's own batch-to-batch
spread), so a region whose batches are no closer on average but more variable than the rest is not taken for a
closer or farther one.</p>
<p>The tests form two families, each Holm-corrected on its own:</p><ul>{family_list}</ul>
<p>The <b>interval</b> is of the shift in the region's mean z: every shift that the same studentized permutation test
does not reject at the level Holm decides that test at (shown beside it: 95% for a single test, higher where Holm asks for
more). So it excludes 0 exactly when the Holm-adjusted p is below alpha, and it covers batch-to-batch variation as
well as the seeds' (an interval over the seeds alone would not). Unbounded means no shift is rejected at that level.
Verdicts at alpha = {alpha:g}:</p><ul>{verdict_list}</ul>
<p>The <code>random</code> ordering is analysed exactly like the metrics as a control: it makes no claim, and its rows
show how large such patterns are by chance. On the demo's synthetic data and with few seeds most verdicts are
expected to be inconclusive: that is what the data say, and the statistics are not tuned to say more.</p>
{learned_note}{one_seed}{dropped}{f"<p><b>Notes:</b></p><ul>{note_list}</ul>" if notes else ""}
<h2>Verdict per claim</h2>
<table><tr><th class=l>model</th><th class=l>claim</th><th class=l>verdict</th><th class=l>in plain words</th></tr>
{summary_rows}</table>
<h2>Every test</h2>
<table><tr><th class=l>model</th><th class=l>claim</th><th class=l>metric</th><th>phase</th><th class=l>family</th>
<th>effect (SD)</th><th>interval (level)</th><th>p</th><th>Holm p</th><th class=l>verdict</th><th class=l>sentence</th></tr>
{test_rows}</table>
<h2>Where the closest batches sit</h2>
<p>Mean z per decile of batch position; error bars: {"t-intervals over the seeds" if 1 not in n_seeds else "see above"},
which describe how the runs vary, not whether position matters (that is the tests' job).</p>
{figure_html}
<h2>Association with position and score (exploratory)</h2>
<p>Spearman &rho; of the batch position (rho_position) and of the batch's mean metric score (rho_score) with the
seed-averaged profile of mean z; negative: higher positions (scores) are closer to the full gradient. The two nearly
repeat each other (batch mean scores rise with position). Holm p within the exploratory family.</p>
<table><tr><th class=l>model</th><th class=l>metric</th><th>phase</th><th class=l>statistic</th><th>&rho;</th><th>p</th>
<th>Holm p</th></tr>{assoc_rows}</table>
{set_section}"""
    return page("bestbatch: the paper's claims, tested", body)


def selection_figure(curves, models, budgets, arms, bundle=None, page_path=None):
    """Test accuracy against optimizer steps, mean over seeds, one panel per (model, budget), one line per arm.
    curves: {(model, budget, arm): {seed: curve}}; bundle, page_path: as for profile_figure."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [(m, float(b)) for m in models for b in budgets]
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        subplot_titles=[f"{m}, budget {b:g}" for m, b in panels],
        vertical_spacing=0.15 if len(panels) > 1 else 0,
    )
    for i, (model, budget) in enumerate(panels):
        for j, arm in enumerate(arms):
            runs = list(curves.get((model, budget, arm), {}).values())
            if not runs:
                continue
            acc = np.mean([c.test_acc for c in runs], axis=0)
            dash = "dot" if arm == "shuffled" or ".random" in arm or arm.startswith("random_subset") else "solid"
            fig.add_trace(
                go.Scatter(
                    x=runs[0].step,
                    y=acc,
                    mode="lines",
                    name=arm,
                    legendgroup=arm,
                    showlegend=i == 0,
                    line=dict(dash=dash, color=f"hsl({int(360 * j / max(len(arms), 1))},60%,45%)"),
                    hovertemplate=f"{arm}<br>step %{{x}}: test accuracy %{{y:.3f}} (mean over "
                    f"{len(runs)} seeds)<extra></extra>",
                ),
                row=i + 1,
                col=1,
            )
    fig.update_xaxes(title_text="optimizer steps")
    fig.update_yaxes(title_text="test accuracy", range=[0, 1])
    fig.update_layout(
        template="plotly_white",
        height=max(450, 380 * len(panels)),
        title="Test accuracy per arm, mean over seeds (solid: policies; dotted: controls)",
    )
    from .plots import figure_html

    return figure_html(fig, bundle, page_path, full_html=False)


SELECTION_VERDICTS = {
    "higher": "a higher test accuracy averaged over the run than the control, significantly (Holm-corrected within "
    "the confirmatory family): the policy learns faster, or to a higher accuracy, or both",
    "lower": "a lower test accuracy averaged over the run than the control, significantly",
    "no detectable difference": "no significant difference at this level with these seeds; not evidence that "
    "there is none",
    "too few seeds": "with this many seeds no outcome could be significant: the sign-flip test's smallest p times the "
    "family's size is not below alpha (see above how many seeds a verdict needs)",
    "exploratory": "a comparison outside the paper's recommendations, or in another outcome: its p is Holm-corrected "
    "within the exploratory family and it prints no verdict",
}
QUANTITY_WORDS = {
    "mean_accuracy": "mean accuracy over the run",
    "steps_to_target": "steps to target",
    "final_accuracy": "final accuracy",
    "phase_end_accuracy": "mean phase-end accuracy",
}


def _recommendation_html(recommended, S):
    """The seeds the confirmatory family needs for power, from selection_stats.recommend_seeds."""
    if not recommended:
        return ""
    from .selection_stats import FAILED_RUNS, POWER_TARGETS

    targets = " and ".join(f"a {speed:g}&times; speed-up in at least {want:.0%}" for speed, want in POWER_TARGETS)
    if recommended["seeds"] is None:
        found = ", ".join(f"{speed:g}&times;: {p:.0%}" for speed, p in recommended["power"].items())
        return (
            f"<p><b>Seeds for power:</b> even {recommended['max_seeds']} seeds do not find {targets} of simulated "
            f"experiments of this layout (found at {recommended['max_seeds']} seeds: {found}).</p>"
        )
    n = recommended["seeds"]
    found = ", ".join(f"a {speed:g}&times; speed-up in {p:.0%}" for speed, p in recommended["power"].items())
    state = (
        f"this study has {S}, <b>fewer than recommended</b>: a speed-up it misses is not evidence that there is none"
        if S < n
        else f"this study has {S}"
    )
    return (
        f"<p><b>Seeds for power: {n} recommended.</b> On simulated curves shaped like step-decay training with this "
        f"study's layout (its budgets, lr drops in steps, evaluation grid and test-set size: seed effects on speed and "
        f"final accuracy, heavy-tailed run effects, correlated evaluation noise in whole test images, "
        f"{FAILED_RUNS:.0%} of runs that fail), {n} seeds find {found} of {recommended['n_experiments']} "
        f"experiments with a speed-up planted in one policy (the fewest seeds at which the one-sided 95% bound clears {targets}; "
        f"<code>selection_stats.recommend_seeds</code>); {state}.</p>"
    )


def selection_html(
    per_arm,
    comparisons,
    families,
    figure_html,
    seeds,
    alpha,
    target_fraction,
    n_train,
    batch_size,
    recommended=None,
    sketch_note="",
):
    """The selection experiment's page: a verdict per recommendation, every arm, every comparison.
    recommended: selection_stats.recommend_seeds for this study's layout (None: not shown)."""
    from .selection_stats import OUTCOMES, smallest_sign_flip_p
    from .stats import LEARNING_RULE

    def fmt(x, spec):
        return "" if x is None or x != x else format(x, spec)

    def klass(r):
        better, worse, _ = OUTCOMES[r["quantity"]]
        return {better: "supported", worse: "contradicted"}.get(r["verdict"], "inconclusive")

    def spec(r):
        return "+.0f" if r["quantity"] == "steps_to_target" else "+.4f"

    confirmatory = [r for r in comparisons if r["family"] == "confirmatory"]
    rec_rows = "".join(
        f"<tr class='{klass(r)}'><td class=l>{html.escape(r['recommendation'])}</td>"
        f"<td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td>"
        f"<td class=l>{html.escape(r['arm'])} vs {html.escape(r['control'])}</td><td>{r['n_seeds']}</td>"
        f"<td>{fmt(r['difference'], spec(r))}</td><td>{_interval(r['lo'], r['hi'], r['level'], spec(r))}</td>"
        f"<td>{fmt(r['p'], '.4f')}</td><td>{fmt(r['p_holm'], '.4f')}</td><td class=l><b>{r['verdict']}</b></td>"
        f"<td class=l>{html.escape(r['seeds_left_out'] or '')}</td></tr>"
        for r in confirmatory
    )
    arm_rows = "".join(
        f"<tr><td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td><td>{r['total_steps']}</td>"
        f"<td class=l>{html.escape(r['arm'])}</td><td>{fmt(r['mean_accuracy'], '.4f')}</td>"
        f"<td>{fmt(r['mean_lo'], '.4f')} to {fmt(r['mean_hi'], '.4f')}</td><td>{fmt(r['final_accuracy'], '.4f')}</td>"
        f"<td>{fmt(r['final_lo'], '.4f')} to {fmt(r['final_hi'], '.4f')}</td>"
        f"<td class=l>{'seed ' + html.escape(r['not_learned']) if r['not_learned'] else ''}</td>"
        f"<td>{fmt(r['steps_to_target'], '.0f')}</td><td>{r['reached_target']} of {r['n_seeds']}</td></tr>"
        for r in per_arm
    )
    cmp_rows = "".join(
        f"<tr class='{klass(r)}'><td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td>"
        f"<td class=l>{html.escape(r['arm'])}</td><td class=l>{html.escape(r['control'])}</td>"
        f"<td class=l>{QUANTITY_WORDS.get(r['quantity'], r['quantity'])}</td><td class=l>{r['family']}</td>"
        f"<td>{r['n_seeds']}</td><td>{fmt(r['difference'], '+.4g')}</td>"
        f"<td>{_interval(r['lo'], r['hi'], r['level'], '+.4g')}</td>"
        f"<td>{fmt(r['p'], '.4f')}</td><td>{fmt(r['p_holm'], '.4f')}</td><td class=l>{r['verdict']}</td></tr>"
        for r in comparisons
    )
    S = len(seeds)
    power = []
    for name, info in families.items():
        m, need = info["n_tests"], info["seeds_needed"]
        if not m:
            continue
        state = (
            f"<b>with {S} seeds no {name} comparison can be significant</b>" if S < need else f"{S} seeds can reach it"
        )
        power.append(
            f"<li>{name}: {m} tests; Holm's first step needs p &lt; {alpha:g}/{m} = {alpha / m:.4g}; a verdict needs "
            f"at least <b>{need} seeds</b> ({need} seeds give a smallest p of {smallest_sign_flip_p(need):.4g}, "
            f"when every seed agrees in sign); {state}.</li>"
        )
    no_target = sorted({r["seeds_without_target"] for r in comparisons if r.get("seeds_without_target")})
    left_out = [r for r in confirmatory if r.get("seeds_left_out")]
    not_learned = [r for r in per_arm if r["not_learned"]]
    not_finite = [r for r in per_arm if r.get("not_finite")]
    learned_note = (
        "<p><b>Runs that did not learn</b> (test accuracy at chance over the last phase): "
        + "; ".join(
            f"{html.escape(r['model'])}, budget {r['budget']:g}, {html.escape(r['arm'])}: seed {html.escape(r['not_learned'])}"
            for r in not_learned
        )
        + ". Not learning is a finding, not a data point: such a run is left out of its arm's means and of the "
        "confirmatory comparisons (named beside each); in the exploratory comparisons it stays, where not learning "
        f"is the policy's outcome. {html.escape(LEARNING_RULE)}</p>"
        if not_learned
        else ""
    )
    finite_note = (
        "<p><b>Runs with a non-finite test accuracy</b>, left out of every comparison: "
        + "; ".join(
            f"{html.escape(r['model'])}, budget {r['budget']:g}, {html.escape(r['arm'])}: seed {html.escape(r['not_finite'])}"
            for r in not_finite
        )
        + ".</p>"
        if not_finite
        else ""
    )
    left_note = (
        "<p><b>Seeds left out of a confirmatory comparison:</b></p><ul>"
        + "".join(
            f"<li>{html.escape(r['model'])}, budget {r['budget']:g}, {html.escape(r['arm'])} vs "
            f"{html.escape(r['control'])}: seed {html.escape(r['seeds_left_out'])}</li>"
            for r in left_out
        )
        + "</ul>"
        if left_out
        else ""
    )
    target_note = (
        f"<p><b>Seeds without a target</b> (no other seed's standard-SGD run learned): {', '.join(no_target)}; they "
        f"are left out of the steps-to-target comparisons.</p>"
        if no_target
        else ""
    )
    verdict_list = "".join(f"<li><b>{v}</b>: {html.escape(w)}.</li>" for v, w in SELECTION_VERDICTS.items())
    sketched = (
        "<p><b>Positions picked from sketched distances.</b> measured_best and greedy_set choose them from the "
        f"Algorithm 1 matrices. {html.escape(sketch_note)}</p>"
        if sketch_note
        else ""
    )
    body = f"""<h1>Do the "best" mini-batches train faster?</h1>
<p>The paper ends with two recommendations it never tried: training converges slightly faster (1) without the
batches at the metric's extremes, and (2) in the first phase, on high-intensity, very distinct (high LPIPS) batches
only. Here each is a training run that visits only the batches its policy picks, against controls: the same
ordering with every batch (<code>all.&lt;metric&gt;</code>), as many images drawn at random
(<code>random_subset.&lt;policy&gt;.&lt;metric&gt;</code>), the same policy on the random ordering
(<code>&lt;policy&gt;.random</code>) and standard SGD reshuffled every epoch (<code>shuffled</code>). Every arm of a
budget takes the same number of optimizer steps, with the learning-rate schedule in steps so the phases line up;
a smaller budget is where curricula are said to help (Wu, Dyer and Neyshabur, "When do curricula work?", ICLR 2021).
At a budget below one pass per phase, each arm's partial pass visits rows spread evenly over its whole plan.</p>
{sketched}
<p><b>The confirmatory outcome: test accuracy averaged over the run.</b> Each run's test accuracy, averaged over
its evaluations (each standing for the steps since the one before): the area under its curve divided by its steps.
A run that learns faster raises it in every phase it is still learning in, which is what "converges faster" means
under a step-decay learning rate. Steps to a target typically cannot see that: 90% of the final accuracy is reached
only after the first learning-rate drop, at the same place for nearly every arm. Steps to target and final accuracy
are kept as exploratory outcomes (docs/design.md compares the power of each).</p>
<p><b>Steps to target</b> (exploratory). Seed s's target is {target_fraction:g} &times; the mean final test accuracy
of the <i>other</i> seeds' <code>shuffled</code> runs of the same model and budget (cross-fitted: a seed's own
<code>shuffled</code> run would always reach its own target and favour it over every other arm); a run's steps to
target is its first evaluation at or above it; a run that never reaches it counts as the budget's steps + 1.</p>
<p><b>Tests.</b> Each comparison is paired over the {S} seeds ({", ".join(map(str, seeds))}): every arm of a seed
starts from the same initial network. The p-value is an exact sign-flip test of the mean difference: under the null
each seed's difference is as likely negative as positive, so all 2<sup>S</sup> sign flips are equally likely; it
holds for grid-valued outcomes and ties. Its smallest two-sided p is 2/2<sup>S</sup> ({smallest_sign_flip_p(S):.4g}
with {S} seeds). The interval is every mean difference the same test does not reject at the level Holm decides
it at (shown beside it), so it excludes 0 exactly when the Holm-adjusted p is below alpha = {alpha:g}; unbounded
means no difference is rejected at that level. Families, each Holm-corrected on its own:</p><ul>{"".join(power)}</ul>
{_recommendation_html(recommended, S)}
<p>Only the confirmatory family (the paper's recommendations: each policy against the same order with every batch,
in the mean accuracy over the run) prints verdicts:</p><ul>{verdict_list}</ul>
<p><b>measured_best</b> picks, per phase, the batches closest to the full gradient in the Algorithm 1 runs of the
other seeds (cross-fitted: never the run that shares its seed's initial network). It may say whether batches
measured close in runs of the same model, data and order train a new run faster than its controls; it may not say
so for another model, data set or order, nor that closeness is the cause (the picked batches also differ in
content). The random ordering's batches differ from seed to seed, so no other run measured them:
<code>measured_best.random</code> picks as many of its batches at random, the control for picking by measurement.</p>
{learned_note}{finite_note}{left_note}{target_note}{dropped_images_note(n_train, batch_size)}
<h2>The paper's recommendations (confirmatory)</h2>
<p>Each policy against the same ordering with every batch, in the test accuracy averaged over the run (positive:
higher).</p>
<table><tr><th class=l>recommendation</th><th class=l>model</th><th>budget</th><th class=l>comparison</th><th>seeds</th>
<th>mean accuracy (difference)</th><th>interval (level)</th><th>p</th><th>Holm p</th><th class=l>verdict</th>
<th class=l>left out</th></tr>{rec_rows}</table>
<h2>Test accuracy against steps</h2>
{figure_html}
<h2>Every arm</h2>
<p>Mean accuracy over the run and final accuracy: means over the seeds that learned, with t-intervals over those
seeds (descriptions of the runs, not tests).</p>
<table><tr><th class=l>model</th><th>budget</th><th>steps</th><th class=l>arm</th><th>mean accuracy</th>
<th>interval</th><th>final accuracy</th><th>interval</th><th class=l>did not learn</th>
<th>steps to target (mean of those reaching it)</th><th>reached</th></tr>
{arm_rows}</table>
<h2>Every comparison</h2>
<table><tr><th class=l>model</th><th>budget</th><th class=l>arm</th><th class=l>control</th><th class=l>outcome</th>
<th class=l>family</th><th>seeds</th><th>difference</th><th>interval (level)</th><th>p</th><th>Holm p</th>
<th class=l>verdict</th></tr>{cmp_rows}</table>"""
    return page("bestbatch: do the best mini-batches train faster?", body)
