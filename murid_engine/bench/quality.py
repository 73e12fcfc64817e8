"""`murid bench quality`: MURID beside the plain baselines, on the same data and budget, per seed.

Runs (each in its own project folder under WORKDIR/seed-S/RUN, each a configuration of the
engine's one training loop):

source-only    the warm-up stage on the source: the lower bound (taken from the full run's own
               warm-up when that run is in the table: it is the same training, step for step);
adabn          the source-only network with its BatchNorm statistics re-estimated on target-train
               images (Li et al., "Revisiting Batch Normalization for Practical Domain
               Adaptation", 2016);
mixstyle       a shared-BatchNorm network trained on source labels with shallow cross-domain
               statistics mixing (MixStyle, Zhou et al., ICLR 2021), for MURID's warm-up + adapt
               budget; no self-training;
dacs           DACS (Tranheden et al., WACV 2021) self-training from `mixstyle`, for as many
               iterations as MURID's curriculum, or `--dacs-iterations` (to match wall times);
full, no-mr, no-curriculum   MURID's pipeline and its ablations;
no-distill     the full run's teacher with a student trained on pseudo-labels alone;
kd             the full run's teacher with a student distilled from it (KL and feature hints
               besides the pseudo-labels: `distill.from_teacher` true, whatever the preset says);
oracle         the warm-up stage on the target's own labels: the upper bound.

`--seeds 0,1,2` runs every run at each seed and reports mean, standard deviation and the single
figures. Each finished run's result is kept in WORKDIR/seed-S/results/RUN.json, so the same
command again resumes an interrupted benchmark (an unfinished run is trained again from its
start) and a later command can add seeds or runs to the same WORKDIR. Every figure is target-val
mIoU (a fraction, as `evaluate --json` writes it); wall time is reported only when the runs had
the machine alone (`placement`).
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from murid_engine.config import apply_overrides, load_preset
from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes
from murid_engine.jobs import EventSink
from murid_engine.project import Project
from murid_engine.records import EvaluationRecord, evaluations
from murid_engine.run_config import RunConfig

RUNS = ("source-only", "adabn", "mixstyle", "dacs", "full", "no-mr", "no-curriculum", "no-distill", "kd",
        "oracle")
DEFAULT_RUNS = RUNS
ABLATIONS = {"full": {}, "no-mr": {"no_mr": True}, "no-curriculum": {"no_curriculum": True}}
PLACEMENTS = ("alone", "shared")
# Runs whose results another run reuses come first: source-only is the full run's warm-up, adabn
# re-estimates that network, no-distill and kd copy the full teacher, mixstyle is dacs's first stage.
EXECUTION_ORDER = ("full", "no-distill", "kd", "no-mr", "no-curriculum", "source-only", "adabn", "dacs",
                   "mixstyle", "oracle")


@dataclass
class QualityConfig:
    workdir: Path  # one project folder per run and seed is made here
    data: Path | None = None  # a SynthCity folder; or give source and target
    source: str = ""  # 'KIND:PATH' of a labelled source
    target: str = ""  # 'KIND:PATH' of a target with a labelled val split
    preset: str = "cpu-demo"
    runs: tuple[str, ...] = DEFAULT_RUNS
    seeds: tuple[int, ...] = (0,)
    overrides: tuple[str, ...] = ()  # --set key=value for every run
    oracle_iterations: int = 2000
    threads: int = 2
    placement: str = "alone"  # 'alone': the runs had the machine to themselves; 'shared': they did not
    dacs_iterations: int | None = None  # None: as many as MURID's curriculum

    def base_config(self, seed: int) -> RunConfig:
        config = apply_overrides(load_preset(self.preset), list(self.overrides))
        if self.data is not None:
            spec = f"synthcity:{self.data.resolve()}"
            config.data.source = config.data.source or spec
            config.data.target = config.data.target or spec
        config.data.source = self.source or config.data.source
        config.data.target = self.target or config.data.target
        config.seed = seed
        return config.validate()

    def fingerprint(self) -> dict:
        """What must match for a WORKDIR's finished runs to be reused by another command."""
        data = str(self.data.resolve()) if self.data else {"source": self.source, "target": self.target}
        return {"preset": self.preset, "overrides": list(self.overrides), "data": data,
                "oracle_iterations": self.oracle_iterations, "threads": self.threads,
                # only when given, so that a WORKDIR made before the option still matches
                **({} if self.dacs_iterations is None else {"dacs_iterations": self.dacs_iterations})}


@dataclass
class RunResult:
    run: str
    seed: int
    wall_s: float
    evaluations: list[dict] = field(default_factory=list)  # EvaluationRecord fields + run_time_s
    note: str = ""

    @property
    def final_miou(self) -> float | None:
        return self.evaluations[-1]["miou"] if self.evaluations else None


def _rows(records: list[EvaluationRecord], offset_s: float = 0.0) -> list[dict]:
    return [asdict(r) | {"run_time_s": round(r.time_s + offset_s, 2)} for r in records]


def _fresh(root: Path) -> Path:
    """A run's project folder, emptied: one left there has no result, so it was interrupted."""
    if root.exists():
        shutil.rmtree(root)
    return root


FINGERPRINT = "bench_quality.json"


def check_workdir(cfg: QualityConfig) -> None:
    """A WORKDIR is new, or was made by a command of the same configuration (then it resumes)."""
    marker, wanted = cfg.workdir / FINGERPRINT, cfg.fingerprint()
    if marker.is_file():
        try:
            earlier = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise UserError(f"{marker} is not readable; give another --workdir") from None
        if earlier != wanted:
            changed = sorted(k for k in wanted if earlier.get(k) != wanted[k])
            raise UserError(f"{cfg.workdir} holds runs of another configuration ({', '.join(changed)} "
                            "differ); give another --workdir")
    elif cfg.workdir.exists() and any(cfg.workdir.iterdir()):
        raise UserError(f"{cfg.workdir} is not empty and holds no benchmark; give another --workdir")
    else:
        atomic_write_bytes(marker, (json.dumps(wanted, indent=2) + "\n").encode())


class QualityBench:
    def __init__(self, cfg: QualityConfig, sink: EventSink):
        self.cfg, self.sink = cfg, sink

    def root(self, seed: int, run: str) -> Path:
        return self.cfg.workdir / f"seed-{seed}" / run

    def result_file(self, seed: int, run: str) -> Path:
        return self.cfg.workdir / f"seed-{seed}" / "results" / f"{run}.json"

    def run(self, run: str, seed: int, done: dict[str, RunResult]) -> RunResult:
        kept = self.result_file(seed, run)
        if kept.is_file():  # finished by an earlier command on this WORKDIR
            return RunResult(**json.loads(kept.read_text()))
        start = time.perf_counter()
        result = getattr(self, "_" + run.replace("-", "_"))(seed, done)
        if not result.wall_s:
            result.wall_s = round(time.perf_counter() - start, 1)
        atomic_write_bytes(kept, (json.dumps(asdict(result), indent=1) + "\n").encode())
        return result

    # ------------------------------------------------------------------ MURID and its ablations
    def _pipeline(self, run: str, seed: int) -> RunResult:
        from murid_engine.pipeline import run_pipeline

        config = self.cfg.base_config(seed).ablate(**ABLATIONS[run]).validate()
        project = Project.create(_fresh(self.root(seed, run)), config)
        start = time.perf_counter()
        run_pipeline(project, self.sink)
        wall = time.perf_counter() - start
        records = evaluations(project.read_metrics())
        # The student's clock starts with distillation: put it after the teacher's last record.
        teacher_s = max((r.time_s for r in records if r.stage != "distill"), default=0.0)
        rows = [row | {"run_time_s": round(row["time_s"] + (teacher_s if row["stage"] == "distill" else 0.0), 2)}
                for row in _rows(records)]
        return RunResult(run, seed, round(wall, 1), rows)

    def _full(self, seed, done):
        return self._pipeline("full", seed)

    def _no_mr(self, seed, done):
        return self._pipeline("no-mr", seed)

    def _no_curriculum(self, seed, done):
        return self._pipeline("no-curriculum", seed)

    def _no_distill(self, seed, done) -> RunResult:
        return self._student_of_full("no-distill", seed, from_teacher=False)

    def _kd(self, seed, done) -> RunResult:
        return self._student_of_full("kd", seed, from_teacher=True)

    def _student_of_full(self, run: str, seed: int, from_teacher: bool) -> RunResult:
        """Another student of the full run's teacher: on pseudo-labels alone (--no-distill) or
        distilled from the teacher (kd).

        The teacher is the same as the full run's (its folder is copied without the student), so
        the difference between the students is distillation's contribution alone.
        """
        from murid_engine.distill import StudentTrainer

        full, root = self.root(seed, "full"), _fresh(self.root(seed, run))
        if not (full / "checkpoints" / "teacher.pt").is_file():
            raise UserError(f"the {run} run needs the full run first (--runs full,{run})")
        shutil.copytree(full, root, ignore=shutil.ignore_patterns("student.pt", "latest_student.pt"))
        project = Project.open(root)
        config = project.config
        config.distill.from_teacher = from_teacher
        project.save_config(config.validate())
        StudentTrainer(project, self.sink).run()
        records = [r for r in evaluations(project.read_metrics()) if r.stage == "distill"]
        return RunResult(run, seed, 0.0, _rows(records))  # the student alone

    # ------------------------------------------------------------------ references and baselines
    def _source_only(self, seed, done) -> RunResult:
        from murid_engine.training.reference import train_reference

        full = done.get("full")
        if full is not None:  # the full run's warm-up is this run, step for step
            rows = [e for e in full.evaluations if e["model"] == "source_only"]
            wall = rows[0]["time_s"] if rows else 0.0
            return RunResult("source-only", seed, wall, rows, note="the full run's warm-up")
        record = train_reference(self.cfg.base_config(seed), _fresh(self.root(seed, "source-only")),
                                 "source_only", self.sink)
        return RunResult("source-only", seed, 0.0, _rows([record] if record else []))

    def _source_only_network(self, seed: int) -> Path:
        for run in ("full", "no-mr", "no-curriculum", "source-only"):
            path = self.root(seed, run) / "checkpoints" / "source_only.pt"
            if path.is_file():
                return path
        raise UserError("the adabn run needs a source-only network first "
                        "(--runs source-only,adabn, or full before adabn)")

    def _adabn(self, seed, done) -> RunResult:
        from murid_engine.bench.adabn_run import adabn_scores

        config = self.cfg.base_config(seed)
        record = adabn_scores(self._source_only_network(seed), config, seed)
        return RunResult("adabn", seed, 0.0, _rows([record]))

    def _baseline(self, which: str, seed: int) -> RunResult:
        from murid_engine.baselines.config import BaselineConfig
        from murid_engine.baselines.trainer import train_baseline

        config = self.cfg.base_config(seed)
        project = Project.create(_fresh(self.root(seed, which)), config)
        budgets = BaselineConfig.matching(config)
        if self.cfg.dacs_iterations is not None:
            budgets.dacs.iterations = self.cfg.dacs_iterations
        train_baseline(project, which, budgets, self.sink)
        return RunResult(which, seed, 0.0, _rows(evaluations(project.read_metrics())))

    def _mixstyle(self, seed, done) -> RunResult:
        if "dacs" in self.cfg.runs:  # DACS starts from this network: its project holds the figure
            dacs = done.get("dacs") or self.run("dacs", seed, done)
            done["dacs"] = dacs
            rows = [e for e in dacs.evaluations if e["model"] == "mixstyle"]
            return RunResult("mixstyle", seed, rows[0]["time_s"] if rows else 0.0, rows,
                             note="the dacs run's first stage")
        return self._baseline("mixstyle", seed)

    def _dacs(self, seed, done) -> RunResult:
        if "dacs" in done:
            return done["dacs"]
        return self._baseline("dacs", seed)

    def _oracle(self, seed, done) -> RunResult:
        from murid_engine.training.reference import train_reference

        record = train_reference(self.cfg.base_config(seed), _fresh(self.root(seed, "oracle")), "oracle",
                                 self.sink, iterations=self.cfg.oracle_iterations)
        if record is None:
            raise UserError("the oracle needs a target with a labelled val split")
        return RunResult("oracle", seed, 0.0, _rows([record]))


def _summary(results: list[RunResult], runs: tuple[str, ...]) -> list[dict]:
    out = []
    for run in runs:
        figures = [r.final_miou for r in results if r.run == run and r.final_miou is not None]
        walls = [r.wall_s for r in results if r.run == run]
        out.append({"run": run, "seeds": [r.seed for r in results if r.run == run], "miou": figures,
                    "mean": statistics.fmean(figures) if figures else None,
                    "std": statistics.stdev(figures) if len(figures) > 1 else 0.0 if figures else None,
                    "wall_s": statistics.fmean(walls) if walls else None})
    return out


def run_quality(cfg: QualityConfig, sink: EventSink) -> dict:
    unknown = [r for r in cfg.runs if r not in RUNS]
    if unknown:
        raise UserError(f"unknown benchmark run '{unknown[0]}' (runs: {', '.join(RUNS)})")
    if cfg.placement not in PLACEMENTS:
        raise UserError(f"--placement must be one of {', '.join(PLACEMENTS)}, not '{cfg.placement}'")
    if cfg.data is not None and not (cfg.data / "synthcity.json").is_file():
        raise UserError(f"{cfg.data} is not a SynthCity folder (no synthcity.json); make one with `murid synth`")
    if cfg.data is None and not (cfg.source and cfg.target):
        raise UserError("give a SynthCity folder (--data) or both --source KIND:PATH and --target KIND:PATH")
    if not cfg.seeds or any(s < 0 for s in cfg.seeds):
        raise UserError(f"--seeds must be non-negative integers, not {list(cfg.seeds)}")
    check_workdir(cfg)
    torch.set_num_threads(cfg.threads)
    bench = QualityBench(cfg, sink)
    order = [r for r in EXECUTION_ORDER if r in cfg.runs]
    results: list[RunResult] = []
    for seed in cfg.seeds:
        done: dict[str, RunResult] = {}
        for run in order:
            if run not in done:
                done[run] = bench.run(run, seed, done)
        results.extend(done[run] for run in cfg.runs)
    return {"preset": cfg.preset, "overrides": list(cfg.overrides),
            "data": str(cfg.data) if cfg.data else {"source": cfg.source, "target": cfg.target},
            "seeds": list(cfg.seeds), "placement": cfg.placement,
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": cfg.threads,
                        "torch": torch.__version__},
            "summary": _summary(results, cfg.runs),
            "runs": [asdict(r) | {"final_miou": r.final_miou} for r in results]}


def format_quality(result: dict) -> str:
    """Markdown: the summary (mean ± std over seeds, single figures), then every evaluation."""
    alone = result.get("placement") == "alone"
    lines = [f"seeds {', '.join(map(str, result['seeds']))}; runs placed: {result['placement']}"
             + ("" if alone else " (wall times not given: the runs shared the machine)"), "",
             "| run | target-val mIoU, mean ± std | per seed | wall (s) |", "|---|---|---|---|"]
    for row in result["summary"]:
        mean = "—" if row["mean"] is None else f"**{100 * row['mean']:.1f}** ± {100 * row['std']:.1f}"
        single = " / ".join(f"{100 * m:.1f}" for m in row["miou"])
        wall = f"{row['wall_s']:.0f}" if alone and row["wall_s"] is not None else "—"
        lines.append(f"| {row['run']} | {mean} | {single} | {wall} |")
    lines += ["", "| run | seed | model after | target-val mIoU | time since the run began (s) |",
              "|---|---|---|---|---|"]
    for run in result["runs"]:
        for e in run["evaluations"]:
            where = e["stage"] + (f" round {e['round']}" if e.get("round") else "")
            seconds = f"{e.get('run_time_s', e['time_s']):.0f}" if alone else "—"
            lines.append(f"| {run['run']} | {run['seed']} | {where} ({e['model']}) | "
                         f"{100 * e['miou']:.1f} | {seconds} |")
    return "\n".join(lines)
