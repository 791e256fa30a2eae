"""Whether a library's search is finished or can continue (``menndl library LIB status``; no torch).

A batch job that chains itself across wall-time limits asks this before it
resubmits: a finished search must not loop forever.
"""

from __future__ import annotations

from typing import Any

import tomllib

FINISHED_REASONS = ("evaluation budget reached", "time limit reached", "search space exhausted")
EXIT_FINISHED = 0  # `menndl library LIB status`: the search reached its budget (or exhausted its space)
EXIT_UNFINISHED = 3  # the search stopped (a signal, a kill, lost workers) and `menndl run --resume` continues it


def search_status(lib: Any) -> dict[str, Any]:
    """The state of the search in ``lib`` (an open :class:`menndl.library.Library`).

    Returns:
        ``state`` (``finished``, ``stopped``: ended by a signal or lost
        workers, ``interrupted``: no clean close, so still running or
        killed), ``stop_reason``, ``evaluations``, ``failed``, ``to_rerun``
        (handed out without a row: a resume runs them first),
        ``search_seconds``, and the job's ``budget_evaluations`` and
        ``time_limit`` (None when unset).
    """
    search = lib.search_state()
    statuses = lib.column("status") if len(lib) else []
    reason = search.stop_reason or ""
    if not search.closed:
        state = "interrupted"
    elif reason.startswith(FINISHED_REASONS):
        state = "finished"
    else:
        state = "stopped"
    budget, limit = _budget(str(lib.attrs.get("job", "")))
    return {
        "state": state,
        "stop_reason": reason if search.closed else "",
        "evaluations": len(lib),
        "failed": int(sum(1 for status in statuses if status not in ("ok", "stopped-early", "over-limit"))),
        "to_rerun": len(search.pending),
        "search_seconds": search.search_seconds or 0.0,
        "budget_evaluations": budget,
        "time_limit": limit,
    }


def _budget(job_text: str) -> tuple[int | None, float | None]:
    """The job's evaluation budget and time limit, as its text in the library says (None when unset)."""
    try:
        search = tomllib.loads(job_text).get("search", {})
    except tomllib.TOMLDecodeError:
        return None, None
    evaluations, limit = search.get("evaluations"), search.get("time_limit")
    return (
        evaluations if isinstance(evaluations, int) else None,
        float(limit) if isinstance(limit, (int, float)) else None,
    )


def describe(status: dict[str, Any], path: str) -> list[str]:
    """The lines ``menndl library LIB status`` prints."""
    state = status["state"]
    resume = f"`menndl run JOB --library {path} --resume` continues it"
    if state == "finished":
        headline = f"finished ({status['stop_reason']})"
    elif state == "stopped":
        headline = f"stopped ({status['stop_reason'] or 'reason not recorded'}); {resume}"
    else:
        headline = f"interrupted (not closed: its search still runs, or was killed); {resume}"
    budget = []
    if status["budget_evaluations"] is not None:
        budget.append(f"{status['budget_evaluations']} evaluations")
    if status["time_limit"] is not None:
        budget.append(f"time limit {status['time_limit']:.0f}s")
    return [
        f"library: {path}",
        f"state: {headline}",
        f"evaluations: {status['evaluations']} ({status['failed']} failed), "
        f"{status['to_rerun']} handed out without a result",
        f"search time: {status['search_seconds']:.0f}s; the job's budget: {', '.join(budget) or 'none recorded'}",
    ]
