"""``zoo run``: the config-driven pipeline, a sequence of stages over artifact folders.

Each stage names the folders it completes. A stage whose folders all hold a valid card is
skipped, so re-running after an interruption resumes at the first incomplete stage (and a
training stage continues from its last epoch checkpoint). A resume whose config changed what a
finished stage was made from is refused (``stale_stages``), never silently mixed. Stages only talk through folders:
any one can be rerun alone, or on another machine.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import config as config_module
from zoo.artifacts import read_card, write_json, write_text
from zoo.config import PipelineConfig
from zoo.errors import ZooError
from zoo.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    outputs: list[Path]
    run: Callable[[], None]
    resumable: bool = False  # keeps a partial folder (checkpoint) instead of starting over
    done: Callable[[], bool] | None = None  # for stages whose result is not a carded folder
    # Config keys its result depends on ("data", "train", "members" or "members.<run name>", sections):
    # a finished stage whose keys changed since config.json was recorded is stale (see stale_stages).
    needs: tuple[str, ...] = ()

    def complete(self) -> bool:
        """Done when ``done()`` says so, else when every output folder holds a valid card."""
        if self.done is not None:
            return self.done()
        for folder in self.outputs:
            try:
                read_card(folder)
            except ZooError:
                return False
        return True


class Context(RunLayout):
    """One run's folder layout (:class:`zoo.layout.RunLayout`) and its dataset, loaded once on first need."""

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg.output)
        self.cfg = cfg
        self._dataset = None

    @property
    def dataset(self):
        if self._dataset is None:
            from zoo.data import load_dataset

            d = self.cfg.data
            self._dataset = load_dataset(
                d.source,
                d.image_size,
                seed=d.seed,
                val_fraction=d.val_fraction,
                test_fraction=d.test_fraction,
                skip_bad=d.skip_bad_files,
            )
        return self._dataset

    def dataset_at(self, size: int | None):
        """The dataset at ``size`` px (same files and split; one load per size)."""
        if size is None or size == self.cfg.data.image_size:
            return self.dataset
        if not hasattr(self, "_sized"):
            self._sized = {}
        if size not in self._sized:
            from zoo.data import load_dataset

            d = self.cfg.data
            self._sized[size] = load_dataset(
                d.source,
                size,
                seed=d.seed,
                val_fraction=d.val_fraction,
                test_fraction=d.test_fraction,
                skip_bad=d.skip_bad_files,
            )
        return self._sized[size]


def _train_stage(ctx: Context, m) -> Stage:
    out = ctx.member_dir(m.run_name)

    def run():
        from zoo.train import train

        resume = (out / "checkpoint" / "state.json").exists()  # else train restarts only a run of its own making
        size = m.image_size or ctx.cfg.data.image_size
        train(
            m.member,
            ctx.dataset_at(size),
            out,
            image_size=size,
            params=m.params,
            weights=m.weights,
            config=ctx.cfg.member_train(m),
            resume=resume,
        )

    return Stage(
        f"train {m.run_name} ({m.member})", [out], run, resumable=True, needs=("data", "train", f"members.{m.run_name}")
    )


def _shifted_stage(ctx: Context) -> Stage | None:
    severity = ctx.cfg.evaluate.shifted
    if not severity:
        return None
    members = [(ctx.member_dir(m.run_name), m.image_size) for m in ctx.cfg.members]
    marker = ctx.report_dir() / "shifted.json"

    def run():
        from zoo.evaluate import evaluate

        out = {}
        for f, size in members:  # each member on the data at its own size (members may differ)
            data = ctx.dataset_at(size)
            r = evaluate(f, split="val", shifted=severity, dataset=data, seed=ctx.cfg.data.seed)
            out[f.name] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "ece": r["ece"]}
        write_json(marker, {"severity": severity, "members": out})

    return Stage("evaluate under stain/blur/noise shift", [], run, done=marker.is_file, needs=_needs("evaluate"))


def extra_stages(ctx: Context) -> list[Stage]:
    """Stages contributed by the ensemble, distillation and export packages."""
    stages: list[Stage] = []
    from zoo import pipeline_stages

    for factory, section in pipeline_stages.FACTORIES:
        for stage in factory(ctx, Stage):
            stage.needs = _needs(section)
            stages.append(stage)
    return stages


_SECTIONS = ("evaluate", "ensemble", "distill", "export", "bench")  # the order the stages run in


def _needs(section: str) -> tuple[str, ...]:
    """What a stage after the members depends on: data, training, all members, its section and those before it."""
    return ("data", "train", "members") + _SECTIONS[: _SECTIONS.index(section) + 1]


def _config_part(cfg: dict, key: str) -> Any:
    if key.startswith("members."):
        name = key.split(".", 1)[1]
        return next((m for m in cfg.get("members", []) if (m.get("name") or m.get("member")) == name), None)
    return cfg.get(key)


def stale_stages(recorded: dict, cfg: PipelineConfig, stages: list[Stage]) -> list[tuple[str, list[str]]]:
    """Finished stages whose config keys differ between ``recorded`` (an earlier run's config.json) and ``cfg``.

    Resuming must not mix artifacts of two configs (an ensemble of the old members beside a new member
    list), and the zoo replaces a finished artifact only when asked: such a run is refused, not patched.
    """
    try:  # fill in keys added since that run with their defaults, so only real changes count
        recorded = _as_dict(config_module.parse(recorded))
    except ZooError:
        pass
    current = _as_dict(cfg)
    out = []
    for stage in stages:
        changed = [k for k in stage.needs if _config_part(recorded, k) != _config_part(current, k)]
        if changed and stage.complete():
            out.append((stage.name, changed))
    return out


def _refuse_stale(root: Path, cfg: PipelineConfig, stages: list[Stage]) -> None:
    path = root / "config.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a new output folder (or one whose run never got past its first write)
    stale = stale_stages(recorded, cfg, stages) if isinstance(recorded, dict) else []
    if stale:
        keys = sorted({k for _, ks in stale for k in ks})
        names = ", ".join(f"'{n}'" for n, _ in stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        raise ZooError(
            f"{root}: {len(stale)} finished stage(s) ({names}) were made with another config "
            f"({', '.join(keys)} changed since {path.name}); resume with that config or choose a new --output"
        )


def build(cfg: PipelineConfig) -> tuple[Context, list[Stage]]:
    ctx = Context(cfg)
    stages = [_train_stage(ctx, m) for m in cfg.members]
    shifted = _shifted_stage(ctx)
    if shifted:
        stages.append(shifted)
    stages += extra_stages(ctx)
    return ctx, stages


def run(cfg: PipelineConfig) -> Path:
    """Run every incomplete stage in order, then write the summary report; returns its path."""
    ctx, stages = build(cfg)
    from zoo import ownership

    # The output folder: new, empty, or an earlier run of a pipeline (its marker); locked while it runs.
    with ownership.claim(ctx.root, "pipeline", resumable=True, flag="output"):
        return _run(cfg, ctx, stages)


def _run(cfg: PipelineConfig, ctx: Context, stages: list[Stage]) -> Path:
    from zoo import ownership

    _refuse_stale(ctx.root, cfg, stages)
    ctx.root.mkdir(parents=True, exist_ok=True)
    ownership.write_marker(ctx.root, "pipeline")
    write_json(ctx.root / "config.json", _as_dict(cfg))
    t0 = time.time()
    timings = _StageTimes(ctx.root / STAGE_TIMES, [s.name for s in stages] + [REPORT_STAGE])
    for i, stage in enumerate(stages, 1):
        if stage.complete():
            log.info("[%d/%d] %s: complete, skipped", i, len(stages), stage.name)
            continue
        log.info("[%d/%d] %s", i, len(stages), stage.name)
        t = time.time()
        stage.run()
        log.info("[%d/%d] %s: done in %.0fs", i, len(stages), stage.name, time.time() - t)
        timings.record(stage.name, time.time() - t)
    report = write_summary(ctx)
    t = time.time()
    write_html_report(ctx)
    timings.record(REPORT_STAGE, time.time() - t)
    log.info("pipeline '%s' finished in %.0fs", cfg.name, time.time() - t0)
    return report


STAGE_TIMES = "stages.json"
REPORT_STAGE = "HTML report"


class _StageTimes:
    """``<output>/stages.json``: seconds per stage, kept across resumed runs (a skipped stage keeps its time).

    Written after every stage, so an interrupted run still says what each finished stage cost;
    benchmarks read it instead of parsing logs. It lists this pipeline's stages only, in their
    order: a time recorded under a name the pipeline no longer has (an older version's stage name)
    is dropped rather than summed into the run's cost.
    """

    def __init__(self, path: Path, order: list[str]):
        self.path = path
        self.order = {name: i for i, name in enumerate(order)}
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
            self.rows = [r for r in earlier.get("stages", []) if isinstance(r, dict) and r.get("name") in self.order]
        except (OSError, ValueError, AttributeError):
            self.rows = []

    def record(self, name: str, seconds: float) -> None:
        from zoo.artifacts import now

        self.rows = [r for r in self.rows if r["name"] != name]
        self.rows.append({"name": name, "seconds": round(seconds, 1), "finished": now()})
        self.rows.sort(key=lambda r: self.order.get(r["name"], len(self.order)))
        write_json(self.path, {"stages": self.rows})


def write_html_report(ctx: Context) -> Path:
    """The last stage: ``report/index.html`` (always rebuilt: it reflects whatever the run holds now)."""
    from zoo.commands.explain import load_explainer
    from zoo.report import build_report

    return build_report(ctx, explainer_for=load_explainer)


def context_for_run(run_dir: str | Path) -> Context:
    """The layout of an existing pipeline output folder, from the config it recorded (``config.json``)."""
    from zoo import config

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ZooError(f"{run_dir}: not a `zoo run` output folder (no config.json)")
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZooError(f"{run_dir / 'config.json'}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ZooError(f"{run_dir / 'config.json'}: not a JSON object")
    data["output"] = str(run_dir)
    return Context(config.parse(data))


def _as_dict(cfg) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def write_summary(ctx: Context) -> Path:
    """A Markdown + JSON + PNG table of every complete artifact's metrics under the output folder."""
    from zoo import plots

    rows = []
    for card_path in sorted(ctx.root.rglob("card.json")):
        folder = card_path.parent
        try:
            card = read_card(folder, verify=False)
        except ZooError:
            continue
        if card["kind"] == "export":
            continue
        row = {"name": card["name"], "kind": card["kind"], "folder": str(folder)}
        for split, m in card.get("metrics", {}).items():
            if isinstance(m, dict) and "accuracy" in m:
                row[split] = {k: m.get(k) for k in ("accuracy", "macro_f1", "nll", "ece")}
        suite = _shift_row(folder, card)
        if suite:
            row["shift_suite"] = suite
        rows.append(row)
    # In-sample scores of fitted combiners are kept in their cards but are not comparable: not shown.
    not_splits = ("name", "kind", "folder", "shift_suite")
    splits = sorted(
        {s for r in rows for s in r if s not in not_splits and "in_sample" not in s},
        key=lambda s: (s.split("-")[0] != "val", s),
    )
    lines = [
        f"# {ctx.cfg.name}: results",
        "",
        "| model | kind | " + " | ".join(f"{s} acc | {s} F1 | {s} ECE" for s in splits) + " |",
        "|---|---|" + "---|---|---|" * len(splits),
    ]
    for r in rows:
        cells = []
        for s in splits:
            m = r.get(s)
            cells += [f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", f"{m['ece']:.4f}"] if m else ["", "", ""]
        lines.append(f"| {r['name']} | {r['kind']} | " + " | ".join(cells) + " |")
    report = ctx.report_dir()
    lines += _shift_lines(rows)
    write_json(report / "summary.json", rows)
    write_text(report / "summary.md", "\n".join(lines) + "\n")
    shifted = [r for r in rows if r.get("shift_suite")]
    if rows and splits:
        bars = [
            {**r, SHIFT_BAR: {"accuracy": r["shift_suite"]["mean_out_of_family_accuracy"]}}
            if r.get("shift_suite")
            else r
            for r in rows
        ]
        plots.comparison_bars(report / "summary.png", bars, splits + ([SHIFT_BAR] if shifted else []))
    if shifted:
        from zoo.shift.report import load_results, plot_models

        plot_models(
            report / "shift_suite.png",
            {r["name"]: load_results(r["folder"]) for r in shifted},
            f"{ctx.cfg.name}: shift suite on {shifted[0]['shift_suite']['split']} (dashed: in-family)",
        )
    return report / "summary.md"


SHIFT_BAR = "shifted (out-of-family)"


def _stored_suite(folder: Path, card: dict, stem: str) -> dict | None:
    """An artifact's ``eval/<stem>.json`` shift-suite results, if its card lists them and they read."""
    from zoo.shift.report import load_results, results_file

    if results_file(stem).as_posix() not in card.get("files", {}):
        return None
    try:
        return load_results(folder, stem)
    except ZooError:
        return None


def _shift_row(folder: Path, card: dict) -> dict | None:
    """The shift-suite numbers of one artifact, with the magnification-adapted ones when it has them."""
    from zoo.shift.report import ADAPTED_STEM, RESULTS

    r = _stored_suite(folder, card, RESULTS.stem)
    if r is None:
        return None
    keys = (
        "mean_out_of_family_accuracy",
        "mean_in_family_accuracy",
        "out_of_family",
        "in_family",
        "mce",
        "mce_out_of_family",
        "ce_normalised",
        "reference",
    )
    row = {
        "split": r.get("data", {}).get("split"),
        "n": r["n"],
        "clean_accuracy": r["clean"]["accuracy"],
        **{k: r.get(k) for k in keys},
    }
    adapted = _stored_suite(folder, card, ADAPTED_STEM)  # [evaluate] shift_adapt_scale
    if adapted is not None:
        row["adapt_scale"] = {
            "clean_accuracy": adapted["clean"]["accuracy"],
            "mean_out_of_family_accuracy": adapted.get("mean_out_of_family_accuracy"),
            "mean_in_family_accuracy": adapted.get("mean_in_family_accuracy"),
        }
    return row


def _shift_lines(rows: list[dict]) -> list[str]:
    shifted = [r for r in rows if r.get("shift_suite")]
    if not shifted:
        return []

    def pct(v):
        return "—" if v is None else f"{v:.4f}"

    s0 = shifted[0]["shift_suite"]
    adapted = any(r["shift_suite"].get("adapt_scale") for r in shifted)
    ref = next((r["shift_suite"]["reference"] for r in shifted if r["shift_suite"].get("reference")), None)
    lines = [
        "",
        f"## Shift suite: clean vs shifted ({s0['split']} split, {s0['n']} images per cell)",
        "",
        "Out-of-family = the shift families a model's training augmentation did not cover (leave-one-family-out); "
        "only those support a robustness claim. In-family results are shown apart. "
        + (
            f"mCE is normalised to `{ref}` (ImageNet-C convention)."
            if ref
            else "mCE is unnormalised (mean top-1 error)."
        ),
        "",
        "| model | kind | clean acc | shifted acc, out-of-family | out-of-family families | shifted acc, in-family "
        "| mCE | mCE out-of-family |" + (" clean, magnification adapted | out-of-family, adapted |" if adapted else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if adapted else ""),
    ]
    for r in shifted:
        s = r["shift_suite"]
        mce_oof = "—" if s["mce_out_of_family"] is None else f"{s['mce_out_of_family']:.3f}"
        a = s.get("adapt_scale") or {}
        lines.append(
            f"| {r['name']} | {r['kind']} | {pct(s['clean_accuracy'])} | "
            f"{pct(s['mean_out_of_family_accuracy'])} | "
            f"{', '.join(s['out_of_family']) or 'none'} | {pct(s['mean_in_family_accuracy'])} | {s['mce']:.3f} "
            f"| {mce_oof} |"
            + (f" {pct(a.get('clean_accuracy'))} | {pct(a.get('mean_out_of_family_accuracy'))} |" if adapted else "")
        )
    lines += ["", "Per family and severity: `report/shift_suite.png`, and each model's `eval/shift_suite.md`."]
    if adapted:
        lines += [
            "Magnification adapted: each acquisition (the clean set; within a cell, one corruption's images) is read "
            "by `zoo.magnification` against the training images and, when the first reading is beyond the tolerance, "
            "iterated to the magnification at which it reads as the training images and resampled back; "
            "label-free, and no model trained on scale. Each model's `eval/shift_suite_adapt_scale.md`."
        ]
    return lines
