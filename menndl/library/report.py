"""``menndl report``: one self-contained HTML file of a library (plotly, its JavaScript inline; nothing fetched).

What it shows: the Pareto front over the library's objectives (a scatter for two, every pair for more), with
each point's id and metrics on hover and its layer table on click; the best score over time; worker
utilization over time; the genealogy of the most accurate architectures; counts by operator and by status,
with the last line of each kind of failure's error; the job.  Points beyond the front are sampled down to
``max_points`` (the front is always whole), so the page stays small however many rows the library has.
Reads a live library like every other query (its journal), never the file being written.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from menndl.library.query import DIRECTIONS, library_score, measured, pareto_front
from menndl.library.reader import Library
from menndl.library.status import search_status
from menndl.library.stored import stored_parents

MAX_POINTS = 20_000  # rows beyond the front shown at most (a seeded random sample of them)
GENEALOGY_TOP = 5  # the most accurate architectures whose ancestry is drawn
GENEALOGY_DEPTH = 6  # generations back
TIMELINE_BINS = 300  # points of the utilization curve
SVG_POINTS = 5_000  # up to this many points a scatter is SVG; beyond it WebGL
LAYER_TABLES = 400  # layer tables embedded (the front first, then the most accurate)


def report_html(lib: Library, max_points: int = MAX_POINTS, seed: int = 0) -> str:
    """The whole report of ``lib`` as one HTML document (the plotly JavaScript inline)."""
    import plotly.io as pio
    import plotly.offline

    names = _objectives(lib)
    front = pareto_front(lib, names) if len(_ok_rows(lib)) else np.empty(0, dtype=np.int64)  # row positions
    figures = [
        ("Pareto front", _front_figure(lib, names, front, max_points, seed)),
        ("Best validation accuracy over time", _progress_figure(lib)),
        ("Worker utilization over time", _utilization_figure(lib)),
        (f"Genealogy of the {GENEALOGY_TOP} most accurate architectures", _genealogy_figure(lib)),
        ("Evaluations by operator and status", _operator_figure(lib)),
    ]
    parts = []
    for index, (title, figure) in enumerate(figures):
        body = (
            pio.to_html(
                figure,
                include_plotlyjs=False,
                full_html=False,
                div_id=f"figure-{index}",
                config={"displaylogo": False, "responsive": True},
            )  # fmt: skip
            if figure is not None
            else "<p class='empty'>nothing to show yet</p>"
        )
        parts.append(f"<section><h2>{html.escape(title)}</h2>{body}</section>")
    tables = _layer_tables(lib, front)
    return _PAGE.format(
        title=html.escape(f"menndl report: {lib.path.name}"),
        plotly=plotly.offline.get_plotlyjs(),
        summary=_summary_html(lib, front),
        figures="\n".join(parts),
        failures=_failures_html(lib),
        job=html.escape(str(lib.attrs.get("job", ""))),
        tables=json.dumps(tables).replace("</", "<\\/"),
    )


def _objectives(lib: Library) -> list[str]:
    names = [n for n in str(lib.attrs.get("objectives", "accuracy,params,train_seconds")).split(",") if n]
    return [n for n in names if n in DIRECTIONS]


def _ok_rows(lib: Library) -> np.ndarray:
    return np.flatnonzero(lib.column("status") == "ok")


def _shown_rows(lib: Library, front: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Successful rows beyond the front, at most ``max_points`` of them (a seeded random sample, in row order)."""
    rest = np.setdiff1d(_ok_rows(lib), front, assume_unique=False)
    if len(rest) <= max_points:
        return rest
    return np.sort(np.random.default_rng(seed).choice(rest, size=max_points, replace=False))


def _hover(lib: Library, rows: np.ndarray, names: list[str]) -> list[str]:
    """One hover text per row: its id and every objective."""
    ids = lib.column("id")[rows]
    values = [lib.column(n)[rows] for n in names]
    return [
        f"id {int(i)}<br>" + "<br>".join(f"{n}: {_fmt(float(v[k]))}" for n, v in zip(names, values))
        for k, i in enumerate(ids)
    ]


def _front_figure(lib: Library, names: list[str], front: np.ndarray, max_points: int, seed: int) -> Any:
    import plotly.graph_objects as go

    if len(front) == 0 or len(names) < 2:
        return None
    rest = _shown_rows(lib, front, max_points, seed)
    ids = lib.column("id")
    groups = [("evaluations" + (f" (a sample of {len(rest)})" if len(rest) == max_points else ""), rest, "#9aa5b1", 5),
              ("Pareto front", front, "crimson", 9)]  # fmt: skip
    if len(names) == 2:
        figure = go.Figure()
        scatter = go.Scattergl if len(rest) + len(front) > SVG_POINTS else go.Scatter
        for label, rows, colour, size in groups:
            figure.add_trace(scatter(
                x=lib.column(names[1])[rows].astype(float), y=lib.column(names[0])[rows].astype(float),
                mode="markers", name=label, marker={"color": colour, "size": size},
                customdata=ids[rows].tolist(), hovertext=_hover(lib, rows, names), hoverinfo="text"))  # fmt: skip
        figure.update_layout(xaxis_title=names[1], yaxis_title=names[0])
        if names[1] in ("params", "flops"):
            figure.update_xaxes(type="log")
    else:
        figure = go.Figure()
        for label, rows, colour, size in groups:
            figure.add_trace(go.Splom(
                dimensions=[{"label": n, "values": lib.column(n)[rows].astype(float)} for n in names],
                name=label, marker={"color": colour, "size": size - 2}, diagonal_visible=False,
                customdata=ids[rows].tolist(), hovertext=_hover(lib, rows, names), hoverinfo="text"))  # fmt: skip
        figure.update_layout(height=220 * len(names))
    figure.update_layout(legend={"orientation": "h"}, margin={"t": 30}, clickmode="event")
    return figure


def _times(values: np.ndarray) -> list[str]:
    """Unix seconds as ISO 8601 (UTC) strings for plotly's date axes."""
    return [datetime.fromtimestamp(float(v), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for v in values]


def _progress_figure(lib: Library) -> Any:
    import plotly.graph_objects as go

    finished, accuracy = lib.column("finished_at"), _score(lib)
    ok = (lib.column("status") == "ok") & np.isfinite(finished) & np.isfinite(accuracy)
    if not ok.any():
        return None
    order = np.flatnonzero(ok)[np.argsort(finished[ok], kind="stable")]
    best = np.maximum.accumulate(accuracy[order])
    changes = np.flatnonzero(np.r_[True, best[1:] > best[:-1]])  # the curve only where it rises, and its end
    steps = np.r_[changes, len(order) - 1]
    figure = go.Figure(go.Scatter(x=_times(finished[order][steps]), y=best[steps], mode="lines+markers",
                                  line={"shape": "hv", "color": "navy"}, name="best so far",
                                  customdata=lib.column("id")[order][steps].tolist(),
                                  hovertemplate="%{x}<br>best %{y:.4f} (id %{customdata})<extra></extra>"))  # fmt: skip
    figure.update_layout(xaxis_title="finished (UTC)", yaxis_title=f"best validation {library_score(lib)}",
                         margin={"t": 30})  # fmt: skip
    return figure


def utilization_curve(submitted: np.ndarray, finished: np.ndarray, workers: int,
                      bins: int = TIMELINE_BINS) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(times, share of ``workers`` busy) at ``bins`` evenly spaced times: a task is busy from submit to finish."""
    done = np.isfinite(submitted) & np.isfinite(finished) & (finished >= submitted)
    start, end = np.sort(submitted[done]), np.sort(finished[done])
    if len(start) == 0 or workers <= 0:
        return np.empty(0), np.empty(0)
    times = np.linspace(start[0], end[-1], bins)
    busy = np.searchsorted(start, times, side="right") - np.searchsorted(end, times, side="right")
    return times, np.minimum(busy / workers, 1.0)


def _utilization_figure(lib: Library) -> Any:
    import plotly.graph_objects as go

    ranks = lib.column("worker_rank")
    workers = len(np.unique(ranks[ranks >= 0]))
    times, share = utilization_curve(lib.column("submitted_at"), lib.column("finished_at"), workers)
    if len(times) == 0:
        return None
    figure = go.Figure(go.Scatter(x=_times(times), y=share, mode="lines", fill="tozeroy", name="busy",
                                  hovertemplate="%{x}<br>%{y:.1%} busy<extra></extra>"))  # fmt: skip
    figure.update_layout(xaxis_title="time (UTC)", yaxis_title=f"share of {workers} workers with a task",
                         yaxis_range=[0, 1.05], margin={"t": 30})  # fmt: skip
    return figure


def _genealogy_figure(lib: Library) -> Any:
    """The ancestors of the best architectures: each at (finished, score), a line to each parent."""
    import plotly.graph_objects as go

    accuracy = _score(lib)
    score = library_score(lib)
    ok = _ok_rows(lib)
    ok = ok[np.isfinite(accuracy[ok])]
    if len(ok) == 0:
        return None
    ids = lib.column("id")
    top = ok[np.argsort(-accuracy[ok], kind="stable")[:GENEALOGY_TOP]]
    nodes = ancestry(lib, top, GENEALOGY_DEPTH)
    edges: set[tuple[int, int]] = set()
    for eval_id, member in nodes.items():
        for parent in stored_parents(lib.path, member):
            if int(parent) in nodes:
                edges.add((int(parent), eval_id))
    figure = go.Figure()

    def place(member: dict[str, Any]) -> tuple[str, float]:
        value = float(member["score"]) if math.isfinite(float(member["score"])) else 0.0
        return _times(np.array([float(member["finished_at"])]))[0], value

    xs: list[Any] = []
    ys: list[Any] = []
    for parent, child in sorted(edges):
        (x0, y0), (x1, y1) = place(nodes[parent]), place(nodes[child])
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#b0b7c0", "width": 1}, hoverinfo="skip",
                                name="parent to child"))  # fmt: skip
    members = sorted(nodes.values(), key=lambda m: int(m["id"]))
    top_ids = {int(ids[row]) for row in top}
    figure.add_trace(go.Scatter(
        x=[place(m)[0] for m in members], y=[place(m)[1] for m in members], mode="markers+text",
        text=[str(int(m["id"])) if int(m["id"]) in top_ids else "" for m in members], textposition="top center",
        marker={"size": [12 if int(m["id"]) in top_ids else 7 for m in members],
                "color": ["crimson" if int(m["id"]) in top_ids else "steelblue" for m in members]},
        customdata=[int(m["id"]) for m in members], name="architectures",
        hovertext=[f"id {int(m['id'])} ({m['operator']}, {m['status']})<br>{score} {_fmt(float(m['score']))}"
                   f"<br>params {int(m['params'])}" for m in members], hoverinfo="text"))  # fmt: skip
    figure.update_layout(xaxis_title="finished (UTC)", yaxis_title=f"validation {score}", margin={"t": 30},
                         clickmode="event")  # fmt: skip
    return figure


def ancestry(lib: Library, rows: np.ndarray, depth: int) -> dict[int, dict[str, Any]]:
    """id -> row of the evaluations at ``rows`` and their ancestors up to ``depth`` generations back.

    One read of the library per generation (`_members` of that generation's rows), so a deep or
    wide family in a million-row library costs a few reads, not one per member.
    """
    ids = lib.column("id")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    found: dict[int, dict[str, Any]] = {}
    generation = np.asarray(rows, dtype=np.int64)
    for _ in range(depth + 1):
        if len(generation) == 0:
            break
        members = _members(lib, generation)
        wanted: set[int] = set()
        for member in members:
            found[int(member["id"])] = member
            wanted.update(int(p) for p in stored_parents(lib.path, member))
        wanted -= found.keys()
        if not wanted:
            break
        targets = np.fromiter(sorted(wanted), dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, targets), len(sorted_ids) - 1)
        generation = order[at[sorted_ids[at] == targets]]  # parents not in this library are left out
    return found


def _members(lib: Library, rows: np.ndarray) -> list[dict[str, Any]]:
    """The fields the genealogy shows of the rows at ``rows``: only those rows of the string columns are read."""
    fields = {name: lib.column(name)[rows].tolist() for name in ("id", "finished_at", "params")}
    fields["score"] = _score(lib)[rows].tolist()
    for name in ("parents", "operator", "status"):
        fields[name] = lib.column_at(name, rows).tolist()
    return [dict(zip(fields, values)) for values in zip(*fields.values())]


def _operator_figure(lib: Library) -> Any:
    import plotly.graph_objects as go

    if len(lib) == 0:
        return None
    operators, status = lib.column("operator").astype(str), lib.column("status").astype(str)
    figure = go.Figure()
    kinds = sorted(set(operators.tolist()))
    for word in sorted(set(status.tolist()), key=lambda w: (w != "ok", w)):
        counts = [int(np.sum((operators == k) & (status == word))) for k in kinds]
        figure.add_trace(go.Bar(x=kinds, y=counts, name=word))
    figure.update_layout(barmode="stack", xaxis_title="operator", yaxis_title="evaluations", margin={"t": 30})
    return figure


def _summary_html(lib: Library, front: np.ndarray) -> str:
    state = search_status(lib)
    status = lib.column("status").astype(str)
    words, counts = np.unique(status, return_counts=True)
    ok = status == "ok"
    accuracy = _score(lib)
    best = float(np.nanmax(accuracy[ok])) if ok.any() and np.isfinite(accuracy[ok]).any() else math.nan
    cells = [
        ("library", str(lib.path)),
        ("job", str(lib.attrs.get("job_name", ""))),
        ("state", str(state["state"]) + (f" ({state['stop_reason']})" if state["stop_reason"] else "")),
        ("evaluations", f"{len(lib)} (" + ", ".join(f"{w} {c}" for w, c in zip(words, counts)) + ")"),
        (f"best validation {library_score(lib)}", _fmt(best)),
        ("objectives", ", ".join(_objectives(lib))),
        ("Pareto front", f"{len(front)} architectures"),
        ("created", str(lib.attrs.get("created_at", ""))),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in cells)
    return f"<table class='summary'>{rows}</table>"


FAILURE_SAMPLE = 4096  # failed rows whose error text is read for the kinds of failure


def _failures_html(lib: Library) -> str:
    """Each kind of failure: its status, how many, and the last line of its error (from the first failures)."""
    status = lib.column("status").astype(str)
    bad = np.flatnonzero(status != "ok")
    if len(bad) == 0:
        return "<p>no failures</p>"
    sample = bad[:FAILURE_SAMPLE]
    errors = lib.column_at("error", sample).astype(str)  # those rows' errors only, not the whole column
    kinds: dict[tuple[str, str], list[int]] = {}
    ids = lib.column("id")
    for row, error in zip(sample.tolist(), errors.tolist()):
        lines = [line for line in error.strip().splitlines() if line.strip()]
        kinds.setdefault((status[row], lines[-1][:200] if lines else ""), []).append(int(ids[row]))
    items = sorted(kinds.items(), key=lambda item: -len(item[1]))[:30]
    rows = "".join(
        f"<tr><td>{html.escape(word)}</td><td>{len(found)}</td><td>{html.escape(text)}</td>"
        f"<td>{html.escape(', '.join(map(str, found[:8])))}{' ...' if len(found) > 8 else ''}</td></tr>"
        for (word, text), found in items
    )
    words, counts = np.unique(status[bad], return_counts=True)
    totals = ", ".join(f"{w} {c}" for w, c in zip(words.tolist(), counts.tolist()))
    note = f" (kinds among the first {len(sample)} of {len(bad)})" if len(sample) < len(bad) else ""
    return (f"<p>{html.escape(totals)}{note}</p><table class='failures'><tr><th>status</th><th>count</th>"
            f"<th>error</th><th>ids</th></tr>{rows}</table>")  # fmt: skip


def _layer_tables(lib: Library, front: np.ndarray) -> dict[str, str]:
    """id -> the layer table of the front's members, then the most accurate, up to `LAYER_TABLES`."""
    from menndl.genome.layer_table import format_layer_table
    from menndl.library.export import spec_of
    from menndl.library.stored import stored_genome

    try:
        spec = spec_of(lib)
    except Exception:  # noqa: BLE001 - an old library without its input: the report leaves the tables out
        return {}
    accuracy = _score(lib)
    ok = _ok_rows(lib)
    ok = ok[np.isfinite(accuracy[ok])]
    chosen = list(dict.fromkeys([*front.tolist(), *ok[np.argsort(-accuracy[ok], kind="stable")].tolist()]))
    positions = np.asarray(chosen[:LAYER_TABLES], dtype=np.int64)
    tables: dict[str, str] = {}
    for eval_id, text in zip(lib.column("id")[positions].tolist(), lib.column_at("genome", positions).tolist()):
        if text:
            row = {"id": eval_id, "genome": text}
            tables[str(int(eval_id))] = format_layer_table(stored_genome(lib.path, row, spec), spec)
    return tables


def _score(lib: Library) -> np.ndarray:
    """The library's score column (accuracy, or r2 for regression) as float64, missing values NaN."""
    return measured(lib, library_score(lib))


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval';
 style-src 'unsafe-inline'; img-src data: blob:; font-src data:">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #1f2933; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 10px; vertical-align: top; }}
table.failures td, table.failures th {{ border-bottom: 1px solid #e4e7eb; }}
pre {{ background: #f5f7fa; padding: 8px; overflow-x: auto; }}
#selected {{ min-height: 2em; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>{title}</h1>
{summary}
{figures}
<section><h2>Selected architecture</h2>
<div id="selected">Click a point of the front or of the genealogy.</div></section>
<section><h2>Failures by status</h2>{failures}</section>
<section><h2>Job</h2><pre>{job}</pre></section>
<script id="layer-tables" type="application/json">{tables}</script>
<script>
(function () {{
  var tables = JSON.parse(document.getElementById("layer-tables").textContent);
  function show(id, text) {{
    var box = document.getElementById("selected");
    box.textContent = "";
    var head = document.createElement("p");
    head.textContent = "evaluation " + id;
    box.appendChild(head);
    var pre = document.createElement("pre");
    pre.textContent = tables[id] || "(layer table not embedded for this id: menndl library LIB show " + id + ")";
    box.appendChild(pre);
  }}
  window.addEventListener("load", function () {{  // every figure was drawn by the inline scripts above
    document.body.dataset.renderedMs = String(Math.round(performance.now()));
    var front = document.getElementById("figure-0");  // what the front figure holds, for checks of the page
    if (front && front.data) {{
      document.body.dataset.frontIds = JSON.stringify(front.data.filter(function (t) {{
        return t.name === "Pareto front"; }}).flatMap(function (t) {{ return t.customdata || []; }}));
      document.body.dataset.shownIds = String(front.data.reduce(function (n, t) {{
        return n + (t.customdata ? t.customdata.length : 0); }}, 0));
    }}
  }});
  document.querySelectorAll("div.plotly-graph-div").forEach(function (div) {{
    div.on("plotly_click", function (event) {{
      var point = event.points[0];
      if (point && point.customdata !== undefined) show(String(point.customdata));
    }});
  }});
}})();
</script>
</body></html>
"""
