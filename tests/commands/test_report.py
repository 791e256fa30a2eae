"""``menndl report``: a real search's library as one HTML file, opened in headless Chromium without network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import can_open_offline, open_offline
from conftest import TINY_JOB, run_menndl

from menndl.library import Library
from menndl.library.query import pareto_front

pytestmark = pytest.mark.timeout(400)
needs_browser = pytest.mark.skipif(not can_open_offline(), reason="no chromium, or unshare --net not allowed")


def _search(folder: Path, objectives: str | None) -> Path:
    job = folder / "job.toml"
    text = TINY_JOB.format(source="digits").replace("evaluations = 6", "evaluations = 8")
    if objectives:
        text = text.replace("[search]\n", f"[search]\nobjectives = {objectives}\n")
    job.write_text(text)
    library = folder / "lib.h5"
    done = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=300)
    assert done.returncode == 0, done.stderr
    return library


@pytest.fixture(scope="module", params=[None, '["accuracy", "params"]'], ids=["three-objectives", "two-objectives"])
def library(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _search(tmp_path_factory.mktemp("report"), request.param)


def _dataset(dom: str, name: str) -> str:
    found = re.search(rf'<body[^>]* data-{name}="([^"]*)"', dom)
    assert found, f"no data-{name} on <body>: the page's load handler did not run"
    return found.group(1).replace("&quot;", '"')


def test_report_is_one_file_that_fetches_nothing(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = run_menndl(["report", str(library), "-o", str(out)], timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)  # everything inline
    assert "Plotly" in text and "Pareto front" in text
    assert not re.search(r"google|gstatic", text)  # the hosts the browser check leaves to Chromium itself


@needs_browser
def test_report_opens_offline_with_no_console_errors_and_shows_the_whole_front(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert run_menndl(["report", str(library), "-o", str(out)], timeout=120).returncode == 0
    page = open_offline(out)
    assert page.dom, page.stderr[-2000:]
    assert page.console == [], page.console
    assert page.requests == [], page.requests  # nothing asked of any network
    with Library.open(library) as lib:
        objectives = str(lib.attrs["objectives"]).split(",")
        front = sorted(int(i) for i in lib.column("id")[pareto_front(lib, objectives)])
        ok = int((lib.column("status") == "ok").sum())
    assert sorted(json.loads(_dataset(page.dom, "front-ids"))) == front
    assert int(_dataset(page.dom, "shown-ids")) == ok  # a small library: every successful row is drawn
    assert "Genealogy" in page.dom and "Selected architecture" in page.dom
    if len(objectives) == 2:  # SVG: the points are in the DOM, one per successful row (WebGL draws the pairs)
        figure = page.dom[page.dom.index('id="figure-0"'):page.dom.index('id="figure-1"')]
        assert figure.count('<path class="point') == ok


@needs_browser
def test_the_browser_check_sees_a_console_error_and_a_fetch(tmp_path: Path) -> None:
    """The checks above could fail: a page that logs an error and asks the network for an image is caught."""
    page_file = tmp_path / "bad.html"
    page_file.write_text("<html><body><script>console.error('broken on purpose');</script>"
                         "<img src='https://example.org/x.png'></body></html>")  # fmt: skip
    page = open_offline(page_file)
    assert any("broken on purpose" in line for line in page.console), page.stderr[-2000:]
    assert page.requests == ["https://example.org/x.png"], page.requests


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    done = run_menndl(["report", str(tmp_path / "none.h5"), "-o", str(tmp_path / "r.html")], timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    done = run_menndl(["report", str(tmp_path / "none.h5"), "-o", str(tmp_path / "no" / "r.html")], timeout=60)
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr


def test_report_of_a_live_library_shows_what_its_journal_holds(tmp_path: Path) -> None:
    """A writer still open (a search running): the report reads the journal, and says the search is not closed."""
    from menndl.library import LibraryWriter

    path = tmp_path / "live.h5"
    writer = LibraryWriter(path, job_text='name = "live"\n', attrs={"objectives": "accuracy,params"}, flush_every=1000)
    for i in range(12):
        failed = i % 5 == 4
        writer.append({"id": i, "parents": json.dumps([i - 1] if i else []), "operator": "mutate" if i else "random",
                       "status": "failed" if failed else "ok", "error": "Traceback\nValueError: bad block" * failed,
                       "accuracy": float("nan") if failed else 0.5 + i / 40, "params": 100 * (12 - i) + 50 * (i % 3),
                       "train_seconds": 1.0 + i, "worker_rank": 1 + i % 2, "submitted_at": 1.8e9 + i,
                       "finished_at": 1.8e9 + i + 0.9})  # fmt: skip
    writer.commit()  # in the journal, not yet in the HDF5 file (flush_every 1000)
    try:
        out = tmp_path / "report.html"
        done = run_menndl(["report", str(path), "-o", str(out)], timeout=120)
        assert done.returncode == 0, done.stderr
        text = out.read_text()
        assert "interrupted" in text and "12 (failed 2, ok 10)" in text
        assert "ValueError: bad block" in text  # the failures table, from the journal's rows
    finally:
        writer.close()


def test_utilization_curve_counts_the_tasks_held_at_each_time() -> None:
    import numpy as np

    from menndl.library.report import utilization_curve

    # 2 workers: one task over [0, 10], one over [5, 10], one that never finished (left out)
    times, share = utilization_curve(np.array([0.0, 5.0, 2.0]), np.array([10.0, 10.0, np.nan]), 2, bins=5)
    assert times.tolist() == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert share.tolist() == [0.5, 0.5, 1.0, 1.0, 0.0]  # at 10 both have finished
    assert utilization_curve(np.array([]), np.array([]), 2)[0].size == 0
