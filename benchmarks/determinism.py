"""Benchmark: what bitwise-reproducible training costs (issue #14, ``TrainConfig.deterministic``).

For two members — the tests' tiny custom_cnn (24 px) and the default custom_cnn at 64 px on
synthetic data — train twice with ``deterministic`` on and twice with it off, each run in a fresh
``zoo train`` process, and record seconds per epoch (from the card) and whether the two runs'
weights are bitwise identical.

    python benchmarks/determinism.py     # ~10 minutes on 2 busy CPU cores

Writes benchmarks/results/determinism.{json,md}.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from corpus import subprocess_env, train_cmd
from machine import describe, one_line

RESULTS = HERE / "results"
TINY = '{"widths":[8,16],"depths":[1,1],"stem_width":8}'
SETUPS = [
    {
        "name": "tiny custom_cnn, 24 px, synthetic:96, 3 epochs",
        "data": "synthetic:96",
        "size": 24,
        "epochs": 3,
        "params": TINY,
        "batch": 32,
    },
    {
        "name": "custom_cnn (default), 64 px, synthetic:600, 2 epochs",
        "data": "synthetic:600",
        "size": 64,
        "epochs": 2,
        "params": None,
        "batch": 64,
    },
]


def train(setup: dict, out: Path, deterministic: bool) -> dict:
    cmd = train_cmd(
        out,
        epochs=setup["epochs"],
        data=setup["data"],
        image_size=setup["size"],
        params=setup["params"],
        batch_size=setup["batch"],
        extra=() if deterministic else ("--nondeterministic",),
    )
    env = subprocess_env()
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    card = json.loads((out / "card.json").read_text())
    history = card["training"]["epochs_run"]
    return {
        "seconds_total": round(time.time() - t0, 1),
        "seconds_training": card["training"]["seconds"],
        "seconds_per_epoch": round(card["training"]["seconds"] / history, 2),
        "weights_sha256": weights_hash(out),
        "val_accuracy": card["metrics"]["val"]["accuracy"],
        "deterministic_recorded": card["training"]["config"]["deterministic"],
    }


def weights_hash(run: Path) -> str:
    import keras

    import zoo.models  # noqa: F401

    model = keras.saving.load_model(run / "model.keras", compile=False)
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> int:
    load_before = load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s_i, setup in enumerate(SETUPS):
            for deterministic in (True, False):
                runs = [train(setup, Path(tmp) / f"s{s_i}-{deterministic}-{r}", deterministic) for r in range(2)]
                rows.append(
                    {
                        "setup": setup["name"],
                        "deterministic": deterministic,
                        "runs": runs,
                        "bitwise_identical": runs[0]["weights_sha256"] == runs[1]["weights_sha256"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    for setup in SETUPS:
        on = [r for r in rows if r["setup"] == setup["name"] and r["deterministic"]][0]
        off = [r for r in rows if r["setup"] == setup["name"] and not r["deterministic"]][0]

        def mean(row):
            return sum(x["seconds_per_epoch"] for x in row["runs"]) / len(row["runs"])

        setup["cost"] = {
            "seconds_per_epoch_on": round(mean(on), 2),
            "seconds_per_epoch_off": round(mean(off), 2),
            "overhead_percent": round(100 * (mean(on) / mean(off) - 1), 1),
        }
    result = {
        "machine": describe(),
        "machine_line": one_line(),
        "load_before": load_before,
        "load_after": load(),
        "setups": SETUPS,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "determinism.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Deterministic training: cost and effect",
        "",
        f"Machine: {result['machine_line']}. "
        f"Load: before `{load_before}`, after `{result['load_after']}` (a shared machine: timings are noisy).",
        "",
        "Each row: two `zoo train` runs in fresh processes with the same seed.",
        "",
        "| setup | deterministic | s/epoch (run 1, run 2) | weights bitwise identical | val accuracy (run 1, run 2) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["runs"]
        lines.append(
            f"| {r['setup']} | {'on' if r['deterministic'] else 'off'} | {a['seconds_per_epoch']}, {b['seconds_per_epoch']} | "
            f"{'yes' if r['bitwise_identical'] else 'no'} | {a['val_accuracy']:.4f}, {b['val_accuracy']:.4f} |"
        )
    lines += ["", "| setup | s/epoch on | s/epoch off | overhead |", "|---|---|---|---|"]
    for s in SETUPS:
        c = s["cost"]
        lines.append(
            f"| {s['name']} | {c['seconds_per_epoch_on']} | {c['seconds_per_epoch_off']} | {c['overhead_percent']:+.1f}% |"
        )
    (RESULTS / "determinism.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
