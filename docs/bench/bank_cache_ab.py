"""One-off measurement behind BENCHMARKS.md "A cheaper teacher": the teacher's bank attention
before the cache (refine_target of an older checkout, swapped in) against this checkout's,
uncached and cached, in one process, the variants interleaved round by round so that a shared
machine's load falls on each alike.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/bench/bank_cache_ab.py BEFORE_TREE bench [ROUNDS]
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/bench/bank_cache_ab.py BEFORE_TREE pass PROJECT [ROUNDS]
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/bench/bank_cache_ab.py BEFORE_TREE agree PROJECT

bench: ms per 256x128 image of the untrained cpu-demo teacher and student, wall (bench speed's
timing rule) and CPU time;
pass: the pseudo-labelling pass over PROJECT's target-train split: the teacher's predictions
alone and the whole round (label_round: regions, thresholds, files), wall and CPU seconds;
agree: largest logit difference and argmax agreement with "before" on PROJECT's val split.
"""

import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from murid_engine.bench.speed import demo_models, example_input, measure_ms
from murid_engine.models.bank_cache import bank_caching
from murid_engine.models.mutual_refinement import MutualRefinement

VARIANTS = ("before", "uncached", "cached")
CPU_RUNS = 40  # images per CPU-time figure
AFTER = MutualRefinement.refine_target


def load_before(tree: str):
    spec = importlib.util.spec_from_file_location(
        "before_mr", Path(tree) / "murid_engine/models/mutual_refinement.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["before_mr"] = module
    spec.loader.exec_module(module)
    old = module.MutualRefinement.refine_target

    def refine_before(self, ft, bank_fs, entries=None, chunk_elems=1 << 25):
        assert entries is None
        return old(self, ft, bank_fs, chunk_elems)
    return refine_before


def variant(name: str, model: torch.nn.Module, before):
    MutualRefinement.refine_target = before if name == "before" else AFTER
    return bank_caching(model, enabled=False) if name == "uncached" else nullcontext()


def summary(runs: dict[str, list[float]]) -> dict:
    return {k: {"median": round(statistics.median(v), 3), "runs": [round(x, 3) for x in v]}
            for k, v in runs.items()}


def bench(before, rounds: int) -> dict:
    teacher, student, _ = demo_models((256, 128))
    x = example_input((256, 128))
    runs = {f"{n}_{k}": [] for n in (*VARIANTS, "student") for k in ("wall_ms", "cpu_ms")}
    for _ in range(rounds):
        for n in (*VARIANTS, "student"):
            model = student if n == "student" else teacher
            with variant(n, teacher, before):
                runs[f"{n}_wall_ms"].append(measure_ms(model, (256, 128), 1, min_seconds=1.5).ms)
                # CPU time as well: on a machine shared by more processes than cores, the wall
                # clock also counts the time other processes held the core.
                with torch.inference_mode():
                    start = time.process_time()
                    for _ in range(CPU_RUNS):
                        model(x)
                    runs[f"{n}_cpu_ms"].append(1000 * (time.process_time() - start) / CPU_RUNS)
    out = summary(runs)
    for n in ("before", "uncached"):
        for k in ("wall_ms", "cpu_ms"):
            out[f"paired_ratio_{n}_over_cached_{k}"] = round(statistics.median(
                b / c for b, c in zip(runs[f"{n}_{k}"], runs[f"cached_{k}"])), 3)
    return out


def teacher_of(project_dir: str):
    from murid_engine.model_store import project_model
    from murid_engine.project import Project

    project = Project.open(project_dir)
    return project, project_model(project, "teacher").model.eval()


def pass_times(before, project_dir: str, rounds: int) -> dict:
    from murid_engine.data import open_dataset
    from murid_engine.distributed import DistContext
    from murid_engine.project import Project
    from murid_engine.training import round_labels

    project, teacher = teacher_of(project_dir)
    cfg, cpu = project.config, torch.device("cpu")
    target = open_dataset(cfg.data.target, cfg.data.target_split)
    runs = {f"{n}_{k}": [] for n in VARIANTS for k in ("predict_wall", "predict_cpu", "round_wall", "round_cpu")}
    with tempfile.TemporaryDirectory(prefix="bank-cache-ab-") as tmp:
        for _ in range(rounds):
            for n in VARIANTS:
                with variant(n, teacher, before):
                    w, c = time.perf_counter(), time.process_time()
                    for _ in round_labels._predictions(teacher, target, cfg.data.target_size, cpu, None, DistContext()):
                        pass
                    runs[f"{n}_predict_wall"].append(time.perf_counter() - w)
                    runs[f"{n}_predict_cpu"].append(time.process_time() - c)
                    copy = Path(tmp) / n
                    shutil.rmtree(copy, ignore_errors=True)
                    shutil.copytree(project_dir, copy)
                    w, c = time.perf_counter(), time.process_time()
                    round_labels.label_round(Project.open(copy), 1, 0.2, teacher, cpu, target=target)
                    runs[f"{n}_round_wall"].append(time.perf_counter() - w)
                    runs[f"{n}_round_cpu"].append(time.process_time() - c)
    return {"images": len(target), **summary(runs)}


@torch.no_grad()
def agreement(before, project_dir: str) -> dict:
    from murid_engine.data import open_dataset
    from murid_engine.training.batches import resize_rgb

    project, teacher = teacher_of(project_dir)
    val = open_dataset(project.config.data.target, project.config.data.val_split)
    images = [torch.from_numpy(resize_rgb(val.read_image(i), project.config.data.target_size))
              .permute(2, 0, 1)[None].float() / 255 for i in range(len(val))]
    out = {"images": len(val), "gates_t": {p: m.gamma_t.item() for p, m in teacher.teacher.mr.items()}}
    for label, gate in (("trained gates", None), ("gates set to 1", 1.0)):
        if gate is not None:  # a barely trained gate would hide any difference in the bank's keys
            for m in teacher.teacher.mr.values():
                m.gamma_t.fill_(gate)
        logits = {}
        for n in VARIANTS:
            with variant(n, teacher, before):
                logits[n] = [teacher(x)["out"] for x in images]
        out[label] = {n: {"max_abs_logit_diff": max((a - b).abs().max().item() for a, b in zip(logits[n], logits["before"])),
                          "argmax_agreement": sum((a.argmax(1) == b.argmax(1)).sum().item() for a, b in zip(logits[n], logits["before"]))
                          / sum(b[:, 0].numel() for b in logits["before"])}
                      for n in ("uncached", "cached")}
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    tree, mode, *rest = sys.argv[1:]
    before = load_before(tree)
    if mode == "bench":
        result = bench(before, int(rest[0]) if rest else 7)
    elif mode == "pass":
        result = pass_times(before, rest[0], int(rest[1]) if len(rest) > 1 else 3)
    else:
        result = agreement(before, rest[0])
    print(json.dumps(result, indent=1))
