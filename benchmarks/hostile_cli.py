"""A hostile set tried from outside the repository, as a user would: the `zoo` CLI in a temp folder (issue #14).

Builds a tiny member and its export, then tries to make the CLI delete user files, hang, print a
traceback, or use a tampered artifact: odd ``--out`` targets (``.``, ``""``, ``/``, symlinks,
the source's parent, a file, ``/dev/null``), FIFOs and devices as images, models, archives and
configs, and re-sealed hand-edited cards. Each command runs in a subprocess with a timeout.

    python benchmarks/hostile_cli.py [WORKDIR]     # ~25 min on 2 busy CPU cores

Writes benchmarks/results/hostile_cli.{json,md}; targets: 0 deleted user files, 0 hangs,
0 tracebacks, every case refused or handled as expected.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
PY = sys.executable
W = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="zoo-hostile-")).resolve()
shutil.rmtree(W, ignore_errors=True)
W.mkdir(parents=True)
LOAD_BEFORE = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
os.chdir(W)
ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", ZOO_PROGRESS="0", CUDA_VISIBLE_DEVICES="")
results = []


def zoo(*args, timeout=600):
    t0 = time.time()
    try:
        r = subprocess.run(
            [PY, "-m", "zoo.cli", "-q", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout
        )
        rc, err, out = r.returncode, r.stderr, r.stdout
    except subprocess.TimeoutExpired as e:
        rc, err, out = "HANG", str(e), ""
    return rc, out, err, round(time.time() - t0, 1)


def case(name, args, expect_rc, must=(), keep=(), timeout=600):
    rc, out, err, sec = zoo(*args, timeout=timeout)
    zlines = [line for line in err.splitlines() if line.startswith("zoo:")]
    ok = rc == expect_rc and "Traceback" not in err and all(m.lower() in (err + out).lower() for m in must)
    lost = [str(k) for k in keep if not Path(k).exists()]
    ok = ok and not lost
    results.append(
        {
            "case": name,
            "rc": rc,
            "ok": ok,
            "lost": lost,
            "seconds": sec,
            "line": (zlines or [""])[-1][:300],
            "tail": "" if ok else (err[-1500:] + out[-500:]),
        }
    )
    print(("OK  " if ok else "BAD ") + name, rc, (zlines or [""])[-1][:200], flush=True)


# ---- setup: a tiny member, its export, a tree of images
import numpy as np
from PIL import Image

for c in ("a", "b"):
    d = W / "tree" / c
    d.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.random.default_rng(i + (c == "b") * 10).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            d / f"{i}.png"
        )
TINY = '{"widths":[8,16],"depths":[1,1],"stem_width":8}'
rc, out, err, sec = zoo(
    "train",
    "custom_cnn",
    "--data",
    "synthetic:96",
    "--image-size",
    "16",
    "--params",
    TINY,
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--out",
    "runs/m",
)
print("train", rc, sec, err[-500:], flush=True)
rc, out, err, sec = zoo("export", "runs/m", "--out", "exp", "--limit", "32")
print("export", rc, sec, err[-500:], flush=True)

# ---- ownership
(W / "mine").mkdir()
(W / "mine" / "notes.txt").write_text("x")
case("export --out a user folder", ["export", "runs/m", "--out", "mine"], 2, ["no card.json"], [W / "mine/notes.txt"])
case("export --out . (cwd)", ["export", "runs/m", "--out", "."], 2, [], [W / "mine/notes.txt", W / "runs/m/card.json"])
case("export --out '' (empty string)", ["export", "runs/m", "--out", ""], 2, [], [W / "runs/m/card.json"])
case("export --out / (root)", ["export", "runs/m", "--out", "/"], 2, [])
case(
    "export --out runs (parent of source) --force",
    ["export", "runs/m", "--out", "runs", "--force"],
    2,
    ["source"],
    [W / "runs/m/card.json"],
)
case(
    "export --out runs/m/x (inside source)",
    ["export", "runs/m", "--out", "runs/m/x"],
    2,
    ["inside"],
    [W / "runs/m/card.json"],
)
case(
    "export --force over the member run",
    ["export", "exp", "--out", "runs/m", "--force"],
    2,
    [],
    [W / "runs/m/card.json"],
)
os.symlink(W / "mine", W / "link")
case(
    "export --out symlink to a user folder",
    ["export", "runs/m", "--out", "link", "--force"],
    2,
    [],
    [W / "mine/notes.txt"],
)
os.symlink(W / "nowhere", W / "dangling")
case("export --out dangling symlink", ["export", "runs/m", "--out", "dangling"], 2, ["dangling"])
(W / "exp" / "notes.txt").write_text("mine")
case(
    "export --force over an export holding a user file",
    ["export", "runs/m", "--out", "exp", "--force"],
    2,
    ["does not list"],
    [W / "exp/notes.txt"],
)
(W / "exp" / "notes.txt").unlink()
case(
    "ensemble vote --out inside a member",
    ["ensemble", "vote", "runs/m", "runs/m", "--out", "runs/m/ens"],
    2,
    ["inside"],
)
case("train --out /proc/self", ["train", "custom_cnn", "--data", "synthetic:32", "--out", "/proc/self"], 2, [])
case(
    "train --out under a file",
    ["train", "custom_cnn", "--data", "synthetic:32", "--out", "mine/notes.txt/run"],
    2,
    ["is a file"],
)
case(
    "train --out an existing complete run",
    ["train", "custom_cnn", "--data", "synthetic:32", "--out", "runs/m"],
    2,
    ["already exists"],
    [W / "runs/m/card.json"],
)
case(
    "data clean --out the data's parent", ["data", "clean", "--data", "tree", "--out", "."], 2, [], [W / "tree/a/0.png"]
)
case("data inspect --out inside the data", ["data", "inspect", "--data", "tree", "--out", "tree/report"], 2, ["inside"])
case(
    "data inspect --out a user folder",
    ["data", "inspect", "--data", "tree", "--out", "mine"],
    2,
    [],
    [W / "mine/notes.txt"],
)
case("data inspect --out new, twice", ["data", "inspect", "--data", "tree", "--out", "rep"], 0)
case("data inspect --out new, again", ["data", "inspect", "--data", "tree", "--out", "rep"], 0)
case("predict --out /dev/null", ["predict", "exp", "tree", "--out", "/dev/null"], 2, ["not a regular file"])
case("predict --out a folder", ["predict", "exp", "tree", "--out", "mine"], 2, ["is a folder"], [W / "mine/notes.txt"])
case(
    "predict --out existing user csv",
    ["predict", "exp", "tree", "--out", "mine/notes.txt"],
    2,
    ["--force"],
    [W / "mine/notes.txt"],
)
cfg = W / "c.toml"
cfg.write_text('output = "mine"\n')
case("zoo run --output a user folder", ["run", "--output", "mine"], 2, [], [W / "mine/notes.txt"])

# ---- special files
os.mkfifo(W / "tree" / "a" / "pipe.png")
case("data inspect with a FIFO image", ["data", "inspect", "--data", "tree"], 0, [], timeout=300)
case(
    "train --skip-bad-files with a FIFO image",
    [
        "train",
        "custom_cnn",
        "--data",
        "tree",
        "--image-size",
        "16",
        "--params",
        TINY,
        "--epochs",
        "1",
        "--skip-bad-files",
        "--out",
        "runs/fifo",
    ],
    0,
    [],
    timeout=600,
)
case(
    "train with a FIFO image (no skip)",
    ["train", "custom_cnn", "--data", "tree", "--image-size", "16", "--out", "runs/fifo2"],
    2,
    ["FIFO"],
    timeout=300,
)
case("predict a folder with a FIFO", ["predict", "exp", "tree"], 0, ["FIFO"], timeout=300)
case("predict /dev/zero as an image", ["predict", "exp", "/dev/zero"], 0, ["character device"], timeout=300)
case("predict /dev/zero as the model", ["predict", "/dev/zero", "tree"], 2, ["character device"], timeout=300)
os.mkfifo(W / "m.onnx")
case("predict a FIFO as the model", ["predict", "m.onnx", "tree/b"], 2, ["FIFO"], timeout=300)
os.mkfifo(W / "d.npz")
case("train --data FIFO.npz", ["train", "custom_cnn", "--data", "d.npz", "--out", "runs/npz"], 2, [], timeout=300)
os.mkfifo(W / "cfg.toml")
case("run --config FIFO", ["run", "--config", "cfg.toml"], 2, [], timeout=300)
case("train --data /dev/zero", ["train", "custom_cnn", "--data", "/dev/zero", "--out", "runs/z"], 2, [], timeout=300)
case(
    "train --weights /dev/zero",
    ["train", "custom_cnn", "--data", "synthetic:32", "--weights", "/dev/zero", "--out", "runs/w"],
    2,
    [],
    timeout=300,
)
os.remove(W / "tree" / "a" / "pipe.png")


# ---- tampered artifacts (copies)
def copy(src, dst):
    shutil.copytree(W / src, W / dst, symlinks=True)
    return W / dst


def reseal(folder, card):
    import hashlib

    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if (
            p.is_file()
            and p.name != "card.json"
            and not p.name.startswith(".")
            and rel.parts[0] not in ("logs", "checkpoint")
        ):
            files[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps({**card, "files": files}))


t = copy("runs/m", "t1")
(t / "card.json").unlink()
os.symlink("/dev/zero", t / "card.json")
case("card.json -> /dev/zero", ["evaluate", "t1"], 2, ["character device"], timeout=300)
t = copy("runs/m", "t2")
(t / "card.json").write_text("[" * 100000 + "]" * 100000)
case("card.json nested 100k deep", ["evaluate", "t2"], 2, ["valid JSON"], timeout=300)
t = copy("runs/m", "t3")
with open(t / "card.json", "wb") as fh:
    fh.truncate(100 << 20)
case("card.json 100 MB sparse", ["evaluate", "t3"], 2, ["limit"], timeout=300)
t = copy("exp", "t4")
card = json.loads((t / "card.json").read_text())
card["classes"] = card["classes"][:-1] + [card["classes"][0]]
reseal(t, card)
case("export card resealed with duplicate classes", ["predict", "t4", "tree"], 2, ["duplicate"], timeout=300)
t = copy("exp", "t5")
shutil.copy(t / "model.onnx", t / "model.int8.onnx")
case(
    "export folder with an unlisted model.int8.onnx",
    ["predict", "t5", "tree", "--variant", "int8"],
    2,
    ["not one of the files"],
    timeout=300,
)
t = copy("runs/m", "t6")
card = json.loads((t / "card.json").read_text())
card["input"]["image_size"] = 99999
reseal(t, card)
case("member card resealed with image_size 99999", ["export", "t6", "--out", "e6"], 2, ["image_size"], timeout=300)
t = copy("runs/m", "t7")
card = json.loads((t / "card.json").read_text())
card["classes"] = ["x"] * len(card["classes"])
reseal(t, card)
case("member card resealed with identical class names", ["evaluate", "t7"], 2, ["duplicate"], timeout=300)
t = copy("runs/m", "t8")
card = json.loads((t / "card.json").read_text())
card["model_file"] = "probs/val.npy"
reseal(t, card)
case("member card model_file -> a .npy", ["evaluate", "t8"], 2, ["cannot load"], timeout=300)

json.dump(results, open(W / "results.json", "w"), indent=1)
sys.path.insert(0, str(Path(REPO) / "benchmarks"))
from machine import one_line

summary = {
    "cases": len(results),
    "ok": sum(r["ok"] for r in results),
    "hangs": sum(r["rc"] == "HANG" for r in results),
    "lost_files": sum(bool(r["lost"]) for r in results),
    "tracebacks": sum("Traceback" in r["tail"] for r in results),
}
res = {
    "machine": one_line(),
    "load_before": LOAD_BEFORE,
    "load_after": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    "summary": summary,
    "results": [{k: v for k, v in r.items() if k != "tail"} for r in results],
}
out = Path(REPO) / "benchmarks" / "results"
(out / "hostile_cli.json").write_text(json.dumps(res, indent=1).replace(str(W), "WORK") + "\n")
md = [
    "# Hostile CLI set (issue #14)",
    "",
    f"Machine: {res['machine']}. Load: {res['load_before']} before, {res['load_after']} after.",
    "Produced by `python benchmarks/hostile_cli.py` (the `zoo` CLI run from a temporary folder outside the repository).",
    "",
    f"{summary['ok']}/{summary['cases']} cases as expected; hangs {summary['hangs']}; user files lost {summary['lost_files']}; "
    f"tracebacks {summary['tracebacks']}.",
    "",
    "| case | rc | as expected | message |",
    "|---|---|---|---|",
]
for r in results:
    md.append(
        f"| {r['case']} | {r['rc']} | {'yes' if r['ok'] else 'NO'} | {r['line'].replace(str(W), 'WORK').replace('|', '/')[:200]} |"
    )
(out / "hostile_cli.md").write_text("\n".join(md) + "\n")
bad = [r for r in results if not r["ok"]]
print(
    f"{len(results) - len(bad)}/{len(results)} ok; hangs {sum(r['rc'] == 'HANG' for r in results)}; "
    f"lost files {sum(bool(r['lost']) for r in results)}; tracebacks {sum('Traceback' in r['tail'] for r in results)}"
)
for r in bad:
    print("BAD", r["case"], r["rc"], r["line"], "\n", r["tail"][-1200:])
