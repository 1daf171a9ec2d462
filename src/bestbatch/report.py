"""The study's pages that span runs: the front page (every model, seed and metric) and the claims page."""

import html

_STYLE = """<style>body{font-family:sans-serif;max-width:78em;margin:2em auto;line-height:1.4;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}
.supported{background:#d9f2d9}.contradicted{background:#f8d7d7}.inconclusive{background:#f2f2f2}
.control{color:#555;font-style:italic}</style>"""


def page(title, body):
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head>'
        f"<body>\n{body}\n</body></html>\n"
    )


def _a(href, text):
    return f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"


def index_html(study, config_yaml, runs, summaries, links, claims_link, selection_link=None):
    """The study's front page.

    runs: [(model, seed)]; summaries: {(model, seed, metric): [per-phase summary dicts]};
    links: {(model, seed): dict(curves=href, heatmaps={metric: href}, layers={metric: href})}; claims_link: href of
    the claims page."""
    rows = []
    for model, seed in runs:
        heatmaps = links[model, seed]["heatmaps"]
        for metric, href in heatmaps.items():
            for s in summaries[model, seed, metric]:
                rows.append(
                    f"<tr><td class=l>{html.escape(model)}</td><td>{seed}</td><td class=l>{_a(href, metric)}</td>"
                    f"<td>{s['phase']}</td><td>{s['epochs']}</td><td>{s['lr']:g}</td><td>{s['mean_distance']:.4g}</td>"
                    f"<td>{s['mean_cosine']:.3f}</td><td>{s['best_batch']} ({100 * s['best_quantile']:.0f}%)</td>"
                    f"<td>{s['spearman']:+.2f}</td></tr>"
                )
    run_list = "".join(
        f"<li>{html.escape(model)}, seed {seed}: {_a(links[model, seed]['curves'], 'training curves')}; heatmaps "
        + ", ".join(_a(href, metric) for metric, href in links[model, seed]["heatmaps"].items())
        + "; layers "
        + ", ".join(_a(href, metric) for metric, href in links[model, seed].get("layers", {}).items())
        + "</li>"
        for model, seed in runs
    )
    body = f"""<h1>bestbatch study <code>{html.escape(study)}</code></h1>
<p>Which mini-batch best approximates the full-batch gradient, and how does that change over training?
Every training image was scored by a metric, the sorted set was cut into a fixed sequence of mini-batches, and in
every epoch the gradient g<sub>k</sub> of each batch at the epoch-start parameters was compared with their mean, the
full gradient. A heatmap cell is the distance ||g<sub>k</sub> &minus; g&#772;||<sub>2</sub>: dark (low) cells are the
batches whose gradient is closest to the full gradient. Each run is one model, one seed and one metric's order.</p>
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
<h2>Runs</h2><ul>{run_list}</ul>
<h2>Summary by run and training phase</h2>
<p>Closest batch: the batch position with the lowest mean z-scored distance in the phase (in % of the order, low
&rarr; high score). Spearman &rho;: rank correlation of batch position with that distance; positive means batches of
low scores are closer to the full gradient, negative means high scores are. One run's &rho; is descriptive: the
claims page says what the seeds support. The <code>random</code> order is the control.</p>
<table><tr><th class=l>model</th><th>seed</th><th class=l>metric</th><th>phase</th><th>epochs</th><th>lr</th>
<th>mean distance</th><th>mean cosine</th><th>closest batch</th><th>Spearman &rho;</th></tr>{"".join(rows)}</table>
<h2>Configuration</h2><pre>{html.escape(config_yaml)}</pre>"""
    return page(f"bestbatch: {study}", body)


def profile_figure(rows, phases):
    """The positional profiles: mean within-epoch z-score per decile of batch position with its interval,
    one panel per phase, one line per (model, metric)."""
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
    return fig.to_html(include_plotlyjs=True, full_html=False)


VERDICT_WORDS = {
    "supported": "the data show the claimed pattern: the Holm-corrected p-value is below alpha and the effect has the "
    "claimed sign",
    "contradicted": "the data show the opposite pattern, significantly",
    "inconclusive": "the data neither support nor contradict the claim at this level: no significant effect (too few "
    "seeds or batches, or no effect). It is not evidence that there is no effect",
}


def _num(x, spec=".3f"):
    return "" if x is None or x != x else format(x, spec)


def claims_html(rows, figure_html, n_seeds, alpha, permutations, notes=()):
    """The claims page: one verdict per (model, claim) in plain words, every test behind it, the controls."""
    summaries = [r for r in rows if r["kind"] == "summary"]
    tests = [r for r in rows if r["kind"] in ("claim", "control")]
    assoc = [r for r in rows if r["kind"] == "association"]
    summary_rows = "".join(
        f"<tr class='{r['verdict']}'><td class=l>{html.escape(str(r['model']))}</td><td class=l>{html.escape(r['claim'])}"
        f"</td><td class=l><b>{r['verdict']}</b></td><td class=l>{html.escape(r['sentence'])}</td></tr>"
        for r in summaries
    )
    test_rows = "".join(
        f"<tr class='{'control' if r['control'] else r['verdict']}'><td class=l>{html.escape(str(r['model']))}</td>"
        f"<td class=l>{html.escape(r['claim'])}</td><td class=l>{html.escape(r['metric'])}</td><td>{r['phase']}</td>"
        f"<td>{_num(r['effect'])}</td><td>{_num(r['ci_lo'])} to {_num(r['ci_hi'])}</td><td>{_num(r['p'], '.4f')}</td>"
        f"<td>{_num(r['p_holm'], '.4f')}</td><td class=l>{r['verdict']}</td><td class=l>{html.escape(r['sentence'])}</td></tr>"
        for r in tests
    )
    assoc_rows = "".join(
        f"<tr><td class=l>{html.escape(str(r['model']))}</td><td class=l>{html.escape(r['metric'])}</td><td>{r['phase']}</td>"
        f"<td class=l>{html.escape(r['statistic'])}</td><td>{_num(r['effect'], '+.3f')}</td><td>{_num(r['p'], '.4f')}</td>"
        f"<td>{_num(r['p_holm'], '.4f')}</td></tr>"
        for r in assoc
    )
    seeds = ", ".join(map(str, n_seeds))
    one_seed = (
        (
            "<p><b>One seed:</b> the intervals come from resampling epochs, which understates the uncertainty "
            "(a batch that is close in one epoch tends to stay close); run several seeds for intervals whose unit "
            "is the seed.</p>"
        )
        if 1 in n_seeds
        else ""
    )
    note_list = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    verdict_list = "".join(f"<li><b>{v}</b>: {html.escape(w)}.</li>" for v, w in VERDICT_WORDS.items())
    body = f"""<h1>The paper's claims, tested</h1>
<p>Each claim of the paper's section 5 is restated as a test on the within-epoch z-scored distances (each epoch's row
of the distance matrix standardised, so the epoch's gradient scale is divided out; negative z is closer to the full
gradient). The <b>effect</b> is the difference in mean z between a region of batch positions and the rest, in units
of the epoch's standard deviation; its <b>interval</b> ({100 * (1 - alpha):.0f}%) is taken over the seeds ({seeds} per
model and metric). The <b>p-value</b> comes from {permutations:,} permutations of the batch positions, one permutation
shared by all epochs of the phase and all seeds (a batch that is close in one epoch tends to stay close, and
permuting each epoch on its own would ignore that and reject far too often), and is Holm-corrected over every test on
this page. Verdicts at alpha = {alpha:g}:</p><ul>{verdict_list}</ul>
<p>The <code>random</code> ordering is analysed exactly like the metrics as a control: it makes no claim, and its rows
show how large such patterns are by chance. On the demo's synthetic data and with few seeds most verdicts are
expected to be inconclusive: that is what the data say, and the statistics are not tuned to say more.</p>
{one_seed}{f"<p><b>Notes:</b></p><ul>{note_list}</ul>" if notes else ""}
<h2>Verdict per claim</h2>
<table><tr><th class=l>model</th><th class=l>claim</th><th class=l>verdict</th><th class=l>in plain words</th></tr>
{summary_rows}</table>
<h2>Every test</h2>
<table><tr><th class=l>model</th><th class=l>claim</th><th class=l>metric</th><th>phase</th><th>effect (SD)</th>
<th>interval</th><th>p</th><th>Holm p</th><th class=l>verdict</th><th class=l>sentence</th></tr>{test_rows}</table>
<h2>Where the closest batches sit</h2>
{figure_html}
<h2>Association with position and score</h2>
<p>Spearman &rho; of the batch position (rho_position) and of the batch's mean metric score (rho_score) with the
seed-averaged profile of mean z; negative: higher positions (scores) are closer to the full gradient.</p>
<table><tr><th class=l>model</th><th class=l>metric</th><th>phase</th><th class=l>statistic</th><th>&rho;</th><th>p</th>
<th>Holm p</th></tr>{assoc_rows}</table>"""
    return page("bestbatch: the paper's claims, tested", body)


def selection_figure(curves, models, budgets, arms, target):
    """Test accuracy against optimizer steps, mean over seeds, one panel per (model, budget), one line per arm."""
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
            runs = [c for (m, _s, b, a), c in curves.items() if (m, b, a) == (model, budget, arm)]
            if not runs:
                continue
            steps = runs[0].step
            acc = np.mean([c.test_acc for c in runs], axis=0)
            dash = "dot" if arm == "shuffled" or ".random" in arm or arm.startswith("random_subset") else "solid"
            fig.add_trace(
                go.Scatter(
                    x=steps,
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
        fig.add_hline(y=target, line=dict(color="#999", dash="dash"), row=i + 1, col=1)
    fig.update_xaxes(title_text="optimizer steps")
    fig.update_yaxes(title_text="test accuracy", range=[0, 1])
    fig.update_layout(
        template="plotly_white",
        height=max(450, 380 * len(panels)),
        title="Test accuracy per arm (solid: policies; dotted: controls; dashed line: the target)",
    )
    return fig.to_html(include_plotlyjs=True, full_html=False)


SELECTION_VERDICTS = {
    "faster": "reaches the target accuracy in fewer steps than the control, significantly (Holm-corrected)",
    "slower": "needs more steps than the control, significantly",
    "higher": "ends with a higher test accuracy than the control, significantly",
    "lower": "ends with a lower test accuracy, significantly",
    "no detectable difference": "no significant difference at this level with these seeds; not evidence that "
    "there is none",
}


def selection_html(per_arm, comparisons, recommendations, figure_html, seeds, alpha, target):
    """The selection experiment's page: a verdict per recommendation, every arm, every comparison."""

    def interval(r, spec):
        return "" if r["lo"] != r["lo"] else f"{r['lo']:{spec}} to {r['hi']:{spec}}"

    def fmt(x, spec):
        return "" if x is None or x != x else format(x, spec)

    rec_rows = "".join(
        f"<tr class='{'supported' if r['verdict'] == 'faster' else 'contradicted' if r['verdict'] == 'slower' else 'inconclusive'}'>"
        f"<td class=l>{html.escape(r['recommendation'])}</td><td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td>"
        f"<td class=l>{html.escape(r['arm'])} vs {html.escape(r['control'])}</td><td>{fmt(r['difference'], '+.1f')}</td>"
        f"<td>{interval(r, '+.1f')}</td><td>{fmt(r['p_holm'], '.4f')}</td><td class=l><b>{r['verdict']}</b></td></tr>"
        for r in recommendations
    )
    arm_rows = "".join(
        f"<tr><td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td><td>{r['total_steps']}</td>"
        f"<td class=l>{html.escape(r['arm'])}</td><td>{r['final_accuracy']:.4f}</td>"
        f"<td>{fmt(r['final_lo'], '.4f')} to {fmt(r['final_hi'], '.4f')}</td><td>{fmt(r['steps_to_target'], '.0f')}</td>"
        f"<td>{r['reached_target']} of {r['n_seeds']}</td></tr>"
        for r in per_arm
    )
    cmp_rows = "".join(
        f"<tr><td class=l>{html.escape(r['model'])}</td><td>{r['budget']:g}</td><td class=l>{html.escape(r['arm'])}</td>"
        f"<td class=l>{html.escape(r['control'])}</td><td class=l>{r['quantity']}</td><td>{fmt(r['difference'], '+.4g')}</td>"
        f"<td>{interval(r, '+.4g')}</td><td>{fmt(r['p'], '.4f')}</td><td>{fmt(r['p_holm'], '.4f')}</td>"
        f"<td class=l>{r['verdict']}</td></tr>"
        for r in comparisons
    )
    verdict_list = "".join(f"<li><b>{v}</b>: {html.escape(w)}.</li>" for v, w in SELECTION_VERDICTS.items())
    body = f"""<h1>Do the "best" mini-batches train faster?</h1>
<p>The paper ends with two recommendations it never tried: training converges slightly faster (1) without the
batches at the metric's extremes, and (2) in the first phase, on high-intensity, very distinct (high LPIPS) batches
only. Here each is a training run that visits only the batches its policy picks, against controls: the same
ordering with every batch (<code>all.&lt;metric&gt;</code>), as many images drawn at random
(<code>random_subset.&lt;policy&gt;.&lt;metric&gt;</code>), the same policy on the random ordering
(<code>&lt;policy&gt;.random</code>) and standard SGD reshuffled every epoch (<code>shuffled</code>). Every arm of a
budget takes the same number of optimizer steps, with the learning-rate schedule in steps so the phases line up;
a smaller budget is where curricula are said to help (Wu, Dyer and Neyshabur, "When do curricula work?", ICLR 2021).
Differences are paired over the {len(seeds)} seeds ({", ".join(map(str, seeds))}), with t-intervals over seeds and
paired t-tests, Holm-corrected over every comparison on this page; the target accuracy is {target:g}.
A run that never reaches it counts as the budget's steps + 1. Verdicts at alpha = {alpha:g}:</p><ul>{verdict_list}</ul>
<p>On the demo's small synthetic set and few seeds most comparisons are expected to show no detectable difference:
that is what the data say.</p>
<h2>The paper's recommendations</h2>
<p>Each policy against the same ordering with every batch, in steps to the target (negative: fewer steps).</p>
<table><tr><th class=l>recommendation</th><th class=l>model</th><th>budget</th><th class=l>comparison</th>
<th>steps (difference)</th><th>interval</th><th>Holm p</th><th class=l>verdict</th></tr>{rec_rows}</table>
<h2>Test accuracy against steps</h2>
{figure_html}
<h2>Every arm</h2>
<table><tr><th class=l>model</th><th>budget</th><th>steps</th><th class=l>arm</th><th>final accuracy</th>
<th>interval</th><th>steps to target (mean of those reaching it)</th><th>reached</th></tr>{arm_rows}</table>
<h2>Every comparison</h2>
<table><tr><th class=l>model</th><th>budget</th><th class=l>arm</th><th class=l>control</th><th class=l>quantity</th>
<th>difference</th><th>interval</th><th>p</th><th>Holm p</th><th class=l>verdict</th></tr>{cmp_rows}</table>"""
    return page("bestbatch: do the best mini-batches train faster?", body)
