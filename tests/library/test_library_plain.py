"""A library opens with plain h5py and pandas following docs/library-format.md alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from menndl.library.writer import LibraryWriter


def test_plain_h5py_and_pandas(tmp_path: Path) -> None:
    path = tmp_path / "search.h5"
    with LibraryWriter(path, job_text="name = 'x'\n", attrs={"objectives": "accuracy,params"}, keep_weights=1) as w:
        for i in range(5):
            ok = i != 2
            w.append(
                {
                    "id": i,
                    "genome": json.dumps({"features": [{"type": "conv", "filters": 4 * (i + 1)}]}),
                    "hash": f"{i:016x}",
                    "parents": [i - 1] if i else [],
                    "operator": "mutate" if i else "random",
                    "status": "ok" if ok else "failed",
                    "error": "" if ok else "Traceback ...",
                    "accuracy": 0.5 + i / 10 if ok else None,
                    "params": 100 * (i + 1),
                }
            )
        w.offer_weights(4, 0.9, {"0.weight": np.ones((2, 2))})
        w.set_pareto([4, 0])

    # --- exactly as the document shows: nothing from menndl below this line ---
    with h5py.File(path, "r", locking=False) as f:
        assert f.attrs["format"] == "menndl-library" and f.attrs["format_version"] <= 1
        ev = f["evaluations"]
        n = min(int(ev.attrs["count"]), *(d.shape[0] for d in ev.values()))
        frame = pd.DataFrame(
            {name: (ev[name].asstr()[:n] if h5py.check_string_dtype(ev[name].dtype) else ev[name][:n]) for name in ev}
        )
        pareto = f["pareto"][:].tolist()
        weights = {name: ds[()] for name, ds in f["weights/4"].items()}
        job = f.attrs["job"]
        state = dict(f["state"].attrs)
    assert len(frame) == 5 and list(frame["id"]) == [0, 1, 2, 3, 4]
    best = frame.loc[frame["accuracy"].idxmax()]
    assert best["id"] == 4 and json.loads(best["genome"])["features"][0]["filters"] == 20
    assert math.isnan(frame.loc[2, "accuracy"]) and frame.loc[2, "status"] == "failed"
    assert frame.loc[3, "parents"] == "[2]" and frame.loc[0, "flops"] == -1
    assert frame.query("status == 'ok' and params < 300")["id"].tolist() == [0, 1]
    assert pareto == [4, 0] and weights["0.weight"].dtype == np.float32 and job == "name = 'x'\n"
    assert json.loads(state["pending"]) == []
