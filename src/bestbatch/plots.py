"""Interactive views of the study: phase-split heatmaps, per-layer shares, training curves, and an index page.

A study writes plotly.js once (`write_plotly_js`, the rule plotly_js) and every page loads it by a relative
path (`plotly_scripts`), so the pages open offline from disk, from a copy of the study folder, and from inside
`snakemake --report`'s zip. A page written without a bundle inlines plotly.js and stands alone.
"""

import hashlib
import html
import os

import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale
from plotly.subplots import make_subplots

from .atomic import write_text
from .metrics import metric_label


def row_zscore(matrix):
    """Each epoch's row as z-scores: the epoch's gradient scale divided out, the pattern kept."""
    mu = matrix.mean(1, keepdims=True)
    sd = matrix.std(1, keepdims=True)
    return (matrix - mu) / np.where(sd > 0, sd, 1)


def row_rank(matrix):
    """Each epoch's row as ranks in [0, 1]: 0 is the batch closest to the full gradient."""
    ranks = matrix.argsort(1).argsort(1).astype(float)
    return ranks / max(matrix.shape[1] - 1, 1)


def phase_rows(epochs, phases):
    """[(phase, first, last, lr, row indices into `epochs`)] for the phases that have epochs."""
    out = []
    for phase, first, last, lr in phases:
        rows = np.flatnonzero((epochs >= first) & (epochs <= last))
        if rows.size:
            out.append((phase, first, last, lr, rows))
    return out


def heatmap_figure(metric, m, phases):
    """One panel per training phase, each with its own colour scale, and a switch to per-epoch z-scores.

    m: the gathered matrix file as a dict (epoch, batch, distance, cosine, batch_score_*).
    """
    parts = phase_rows(m.epoch, phases)
    fig = make_subplots(
        rows=len(parts),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06 if len(parts) > 1 else 0,
        subplot_titles=[f"phase {p}: epochs {a}-{b}, lr {lr:g}" for p, a, b, lr, _ in parts],
    )
    z_views = {
        "distance": m.distance,
        "z-score within epoch": row_zscore(m.distance),
        "rank within epoch": row_rank(m.distance),
    }
    k = len(m.batch)
    score = np.broadcast_to(
        np.stack([m.batch_score_min, m.batch_score_mean, m.batch_score_max], -1), (len(m.epoch), k, 3)
    )
    custom = np.concatenate(
        [m.distance[..., None], m.cosine[..., None], z_views["z-score within epoch"][..., None], score], -1
    )
    hover = (
        "epoch %{y}, batch %{x}<br>distance %{customdata[0]:.5g}<br>cosine to full gradient %{customdata[1]:.4f}"
        "<br>z-score in epoch %{customdata[2]:.2f}<br>"
        + metric_label(metric)
        + ": min %{customdata[3]:,.4~r}, mean %{customdata[4]:,.4~r}, max %{customdata[5]:,.4~r}<extra></extra>"
    )
    n = len(parts)
    for i, (phase, _first, _last, _lr, rows) in enumerate(parts):
        axis = "coloraxis" if i == 0 else f"coloraxis{i + 1}"
        fig.add_trace(
            go.Heatmap(
                x=m.batch,
                y=m.epoch[rows],
                z=m.distance[rows],
                customdata=custom[rows],
                hovertemplate=hover,
                coloraxis=axis,
                name=f"phase {phase}",
            ),
            row=i + 1,
            col=1,
        )
        low, high = fig.layout[f"yaxis{i + 1 if i else ''}"].domain  # the colour bar spans its own panel
        fig.update_layout(
            {
                axis: dict(
                    colorscale=get_colorscale("Viridis"),
                    colorbar=dict(title="distance", len=high - low, y=(low + high) / 2, yanchor="middle", x=1.02),
                )
            }
        )
        fig.update_yaxes(title_text="epoch", autorange="reversed", row=i + 1, col=1)
    fig.update_xaxes(title_text=f"batch position in ascending {metric_label(metric)} order (low → high)", row=n, col=1)
    buttons = []
    for label, z in z_views.items():
        # plotly.js knows no "_r" names: send the scale itself; z-scores diverge around 0
        scale = get_colorscale("RdBu_r" if label.startswith("z-score") else "Viridis")
        mid = 0 if label.startswith("z-score") else None
        axes = ["coloraxis" if i == 0 else f"coloraxis{i + 1}" for i in range(n)]
        buttons.append(
            dict(
                label=label,
                method="update",
                args=[
                    {"z": [z[rows] for *_, rows in parts]},
                    {f"{a}.colorscale": scale for a in axes}
                    | {f"{a}.cmid": mid for a in axes}
                    | {f"{a}.colorbar.title.text": label for a in axes},
                ],
            )
        )
    # title on top, the view switch under it, then the first panel's title: fixed pixels, whatever the height
    height, top, bottom = max(450, 280 * n), 130, 80
    fig.update_layout(
        title=dict(
            text=f"{metric}: distance of each mini-batch gradient to the full gradient",
            x=0,
            xref="paper",
            y=1 - 16 / height,
            yref="container",
            yanchor="top",
        ),
        height=height,
        margin=dict(t=top, b=bottom),
        template="plotly_white",
        updatemenus=[
            dict(
                buttons=buttons,
                direction="right",
                x=0,
                y=1 + 30 / (height - top - bottom),
                xanchor="left",
                yanchor="bottom",
                type="buttons",
                showactive=True,
                pad=dict(t=0, b=0),
            )
        ],
    )
    return fig


def _per_epoch(m, value):
    """A per-epoch series of the matrix `m`, NaN where it has none (plotly leaves NaN points out)."""
    return np.full(len(m.epoch), np.nan) if value is None else np.asarray(value, dtype=float)


CURVE_PANELS = (
    "training loss (mean over the epoch's batches)",
    "test accuracy after the epoch",
    "gradient noise scale B<sub>simple</sub> (examples)<br><sup>B · mean<sub>k</sub> ‖g<sub>k</sub> − ḡ‖²"
    " / ‖ḡ‖², McCandlish et al. 2018</sup>",
    "gradient diversity<br><sup>Σ<sub>k</sub> ‖g<sub>k</sub>‖² / ‖Σ<sub>k</sub> g<sub>k</sub>‖², Yin et al. 2018</sup>",
)


def note_sketch(fig, statement):
    """Under a page's figure, the bound of its sketched gradients (gradients.sketch_statement; "" for exact
    gradients: nothing), wrapped to the page's width; the figure grows by the note's lines."""
    if not statement:
        return fig
    import textwrap

    lines = textwrap.wrap(statement, 150)
    height = fig.layout.height or 450
    bottom = (fig.layout.margin.b if fig.layout.margin.b is not None else 80) + 18 * len(lines) + 20
    fig.add_annotation(
        text="<br>".join(html.escape(line) for line in lines),
        xref="paper",
        yref="paper",
        x=0,
        y=0,
        yshift=-(bottom - 18 * len(lines) - 10),
        xanchor="left",
        yanchor="top",
        align="left",
        showarrow=False,
        font=dict(size=11, color="#8a4b00"),
        name="sketch bound",
    )
    fig.update_layout(height=height + 18 * len(lines) + 20, margin=dict(b=bottom))
    return fig


def curves_figure(runs, learning=None):
    """Per epoch, one line per metric's fixed order: training loss and test accuracy, and beside them the
    gradient noise scale B_simple (McCandlish et al. 2018) and the gradient diversity (Yin et al. 2018)
    of the epoch's K batch gradients, both on log scales.

    learning: {metric: stats.Learning}, optional; a metric whose run did not learn is named in the legend
    ("(did not learn)") and under the title, with its accuracy over the last phase and chance."""
    learning = learning or {}
    failed = {
        metric: learning[metric] for metric in sorted(runs) if metric in learning and not learning[metric].learned
    }
    fig = make_subplots(rows=2, cols=2, subplot_titles=CURVE_PANELS, vertical_spacing=0.14, horizontal_spacing=0.08)
    for i, (metric, m) in enumerate(sorted(runs.items())):
        name = f"{metric} (did not learn)" if metric in failed else metric
        style = dict(
            legendgroup=metric,
            mode="lines+markers",
            line=dict(color=f"hsl({int(360 * i / max(len(runs), 1))},60%,45%)"),
        )
        series = [
            (m.train_loss.mean(1), "%{y:.4g}"),
            (m.test_acc, "%{y:.4f}"),
            (_per_epoch(m, m.noise_scale), "%{y:.4g} examples"),
            (_per_epoch(m, m.gradient_diversity), "%{y:.4g}"),
        ]
        for j, (y, value) in enumerate(series):
            fig.add_trace(
                go.Scatter(
                    x=m.epoch,
                    y=y,
                    name=name,
                    showlegend=j == 0,
                    **style,
                    hovertemplate=f"{name}, epoch %{{x}}: {value}<extra></extra>",
                ),
                row=j // 2 + 1,
                col=j % 2 + 1,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_yaxes(type="log", title_text="examples", row=2, col=1)
    fig.update_yaxes(type="log", row=2, col=2)
    title = "What each fixed order does to learning"
    if failed:  # the finding, under the title: which orders kept the network at chance
        title += "".join(
            f"<br><sup><span style='color:#b00000'>{metric}: {status.describe()}</span></sup>"
            for metric, status in failed.items()
        )
    fig.update_layout(
        template="plotly_white",
        height=850 + 20 * len(failed),
        title=title,
        **(dict(margin=dict(t=100 + 20 * len(failed))) if failed else {}),
    )
    return fig


def layer_shares(m, rows):
    """Per parameter tensor, its mean share of ||g_k - g_bar||^2 over the epochs `rows` and all batches:
    mean over (e, k) of layer_distance^2 / distance^2 (each (e, k) sums to 1 over the tensors)."""
    d2 = m.distance[rows][..., None] ** 2
    share = np.divide(m.layer_distance[rows] ** 2, d2, out=np.full(m.layer_distance[rows].shape, np.nan), where=d2 > 0)
    with np.errstate(invalid="ignore"):
        return np.nanmean(share.reshape(-1, share.shape[-1]), 0)


def layers_figure(metric, m, phases):
    """Which parameter tensors carry the distance in each phase: a heatmap of tensors (rows, in network
    order) by training phase (columns); a cell is the tensor's mean share of ||g_k - g_bar||^2."""
    parts = phase_rows(m.epoch, phases)
    names = [str(n) for n in m.layer_name]
    share = np.stack([layer_shares(m, rows) for *_, rows in parts], 1)  # (L, phases)
    mean_layer = np.stack([m.layer_distance[rows].mean((0, 1)) for *_, rows in parts], 1)
    labels = [f"phase {p}" for p, *_ in parts]
    epochs = np.array([[f"{a}-{b}" for _, a, b, _, _ in parts]] * len(names))
    lrs = np.array([[lr for *_, lr, _ in parts]] * len(names))
    custom = np.stack([epochs, np.char.mod("%.4g", lrs), np.char.mod("%.5g", mean_layer)], -1)
    fig = go.Figure(
        go.Heatmap(
            x=labels,
            y=names,
            z=share,
            customdata=custom,
            colorscale=get_colorscale("Viridis"),
            zmin=0,
            colorbar=dict(title="share of ‖g<sub>k</sub> − ḡ‖²", tickformat=".0%"),
            name="share",
            hovertemplate="%{y}<br>%{x}: epochs %{customdata[0]}, lr %{customdata[1]}<br>share of ‖g_k − ḡ‖² "
            "%{z:.2%}<br>mean ‖g_k − ḡ‖ over the tensor %{customdata[2]}<extra></extra>",
        )
    )
    height = max(450, 160 + 18 * len(names))
    fig.update_yaxes(
        autorange="reversed", title_text="parameter tensor (network order)", automargin=True, type="category"
    )
    fig.update_xaxes(title_text="training phase", side="top", type="category")
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin=dict(t=140),
        title=dict(
            text=f"{metric}: which parameter tensors carry the distance of the mini-batch "
            f"gradients to the full gradient<br><sup>mean over the phase's epochs and "
            f"batches of ‖g_k − ḡ‖² over the tensor / ‖g_k − ḡ‖²; each column sums "
            f"to 100%</sup>",
            x=0,
            xref="paper",
        ),
    )
    return fig


SET_STYLES = {  # set name (bestbatch.sets.epoch_sets): legend label, colour, dash
    "greedy": ("greedy set (forward selection)", "#d62728", "solid"),
    "swapped": ("greedy, then single swaps", "#ff7f0e", "solid"),
    "closest": ("the m individually closest", "#1f77b4", "solid"),
    "random_median": ("random sets: median", "#7f7f7f", "solid"),
    "random_rms": ("random sets: root mean square (exact)", "#7f7f7f", "dot"),
}
REGION_SYMBOLS = {"upper_quartile": "diamond", "middle_80": "square", "outside_middle_80": "triangle-up"}


def sets_figure(metric, table, cosine_by_phase, phases):
    """Which sets of batches stand in for the full gradient, per training phase (columns): the relative error
    ||mean_S g - g_bar|| / sqrt(mean_k ||g_k - g_bar||^2) against the set size m (mean over the phase's epochs;
    log axes) for the greedy set, the m closest, random sets (median, 5-95% band, exact root mean square) and
    the paper's regions; the K x K heatmap of the cosines between the batch gradients' deviations from g_bar, mean
    over the phase, in the metric's order (sets.phase_cosines); and the effective rank of the centred Gram
    matrix per epoch.

    table: bestbatch.sets.run_sets rows as a DataFrame; cosine_by_phase: {phase: (K, K)}."""
    parts = [(p, a, b, lr) for p, a, b, lr in phases if p in cosine_by_phase]
    n = len(parts)
    fig = make_subplots(
        rows=3,
        cols=n,
        row_heights=[0.38, 0.42, 0.2],
        vertical_spacing=0.08,
        horizontal_spacing=0.06,
        specs=[[{}] * n, [{}] * n, [{"colspan": n}] + [None] * (n - 1)],
        subplot_titles=[f"phase {p}: epochs {a}-{b}, lr {lr:g}" for p, a, b, lr in parts]
        + [f"cos(g<sub>i</sub> − ḡ, g<sub>j</sub> − ḡ), phase {p}" for p, *_ in parts]
        + ["effective rank of the centred Gram matrix (participation ratio)"],
    )
    for col, (phase, *_rest) in enumerate(parts, 1):
        mean = table[table.phase == phase].groupby(["set", "m"], sort=True)["relative_error"].mean()
        first = col == 1
        lo, hi = mean.get("random_q05"), mean.get("random_q95")
        if lo is not None and hi is not None:
            fig.add_trace(
                go.Scatter(
                    x=list(hi.index) + list(lo.index[::-1]),
                    y=list(hi.values) + list(lo.values[::-1]),
                    fill="toself",
                    fillcolor="rgba(127,127,127,0.2)",
                    line=dict(width=0),
                    name="random sets: 5-95%",
                    legendgroup="band",
                    showlegend=first,
                    hoverinfo="skip",
                ),
                row=1,
                col=col,
            )
        for name, (label, colour, dash) in SET_STYLES.items():
            if name in mean:
                fig.add_trace(
                    go.Scatter(
                        x=mean[name].index,
                        y=mean[name].values,
                        mode="lines+markers",
                        line=dict(color=colour, dash=dash),
                        name=label,
                        legendgroup=name,
                        showlegend=first,
                        hovertemplate=f"{label}<br>m = %{{x}}: %{{y:.3g}}<extra>phase {phase}</extra>",
                    ),
                    row=1,
                    col=col,
                )
        for region, symbol in REGION_SYMBOLS.items():
            if region in mean:
                fig.add_trace(
                    go.Scatter(
                        x=mean[region].index,
                        y=mean[region].values,
                        mode="markers",
                        marker=dict(symbol=symbol, size=11, color="#2ca02c"),
                        name=region.replace("_", " "),
                        legendgroup=region,
                        showlegend=first,
                        hovertemplate=f"{region}: m = %{{x}}, %{{y:.3g}}<extra>phase {phase}</extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(type="log", title_text="set size m", row=1, col=col)
        fig.update_yaxes(type="log", row=1, col=col)
        fig.add_trace(
            go.Heatmap(
                z=cosine_by_phase[phase],
                zmin=-1,
                zmax=1,
                colorscale="RdBu_r",
                showscale=first,
                colorbar=dict(title="cosine", len=0.4, y=0.45),
                hovertemplate="batch %{y} and %{x}: cos %{z:.3f}<extra>phase " + str(phase) + "</extra>",
            ),
            row=2,
            col=col,
        )
        fig.update_xaxes(title_text="batch (metric order)", row=2, col=col)
        fig.update_yaxes(autorange="reversed", row=2, col=col)
    fig.update_yaxes(title_text="error / RMS batch distance", row=1, col=1)
    rank = table.groupby("epoch", sort=True)["effective_rank"].first()
    fig.add_trace(
        go.Scatter(
            x=rank.index,
            y=rank.values,
            mode="lines+markers",
            line=dict(color="#9467bd"),
            name="effective rank",
            hovertemplate="epoch %{x}: %{y:.2f} directions<extra></extra>",
        ),
        row=3,
        col=1,
    )
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_yaxes(title_text="directions", row=3, col=1)
    fig.update_layout(
        template="plotly_white",
        height=1150,
        margin=dict(t=130),
        title=dict(
            text=f"{metric_label(metric)}: which sets of batches stand in for the full gradient<br><sup>"
            "‖mean over the set of g<sub>k</sub> − ḡ‖ relative to a single batch's (RMS), mean over the phase's "
            "epochs; from the exact batch Gram matrix</sup>",
            x=0,
            xref="paper",
        ),
    )
    return fig


def phase_summary(m, phases):
    """Per phase: where the closest batches sit and how distance follows the score (Spearman rho)."""
    out = []
    k = len(m.batch)
    for phase, first, last, lr, rows in phase_rows(m.epoch, phases):
        z = row_zscore(m.distance[rows]).mean(0)
        best = int(np.argmin(z))
        pos = np.arange(k)
        rho = np.corrcoef(pos, z.argsort().argsort())[0, 1] if k > 1 else float("nan")
        out.append(
            dict(
                phase=phase,
                epochs=f"{first}-{last}",
                lr=lr,
                best_batch=best,
                best_quantile=best / max(k - 1, 1),
                spearman=float(rho),
                mean_distance=float(m.distance[rows].mean()),
                mean_cosine=float(m.cosine[rows].mean()),
            )
        )
    return out


PLOTLY_JS = "plotly.min.js"


def write_plotly_js(path):
    """The plotly.js that the installed plotly package writes into its pages (one copy for a whole study)."""
    from plotly.offline import get_plotlyjs

    write_text(path, get_plotlyjs())


def report_id(path):
    """The folder `snakemake --report out.zip` stores a result in (data/raw/<id>/<name>): the first 16 hex digits
    of the SHA-256 of its path as the workflow names it (snakemake.common.get_report_id, shortened to
    snakemake.iocontainers.FILE_HASH_PREFIX_LEN). tests/test_pages_bundle.py opens a page from a real zip."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def plotly_scripts(bundle, page):
    """The <script> tags that load the study's plotly.js into `page`: by its path relative to the page (the
    results folder, or a copy of the study folder), else from its place inside the report's zip, else a line on
    the page that says which file is missing. bundle and page: paths as the workflow names them."""
    relative = os.path.relpath(bundle, os.path.dirname(page) or ".").replace(os.sep, "/")
    in_zip = f"../{report_id(bundle)}/{os.path.basename(bundle)}"
    missing = html.escape(
        f"This page draws its figure with plotly.js, which it loads from {relative} (the study folder's "
        f"{os.path.basename(bundle)}). Open the page inside its study folder, or copy that file beside it."
    )
    return (
        f'<script src="{html.escape(relative)}"></script>\n'
        f"<script>window.Plotly||document.write('<script src=\"{in_zip}\"><\\/script>')</script>\n"
        f"<script>window.Plotly||document.write('<p style=\"color:#b00\">{missing}</p>')</script>\n"
    )


def figure_html(fig, bundle=None, page=None, full_html=True):
    """A figure as HTML: loading the study's plotly.js (bundle, see plotly_scripts) or, without one, inlining it."""
    if bundle is None:
        return fig.to_html(include_plotlyjs=True, full_html=full_html, config={"responsive": True})
    body = fig.to_html(include_plotlyjs=False, full_html=full_html, config={"responsive": True})
    scripts = plotly_scripts(bundle, page)
    if not full_html:
        return scripts + body
    head = body.index("<head>") + len("<head>")
    return body[:head] + '<meta charset="utf-8">\n' + scripts + body[head:]


def write_figure(fig, path, bundle=None):
    """The figure's page, opening with no network: plotly.js loaded from the study's bundle (a path as the
    workflow names it), or inlined when there is none."""
    write_text(path, figure_html(fig, bundle, path))
