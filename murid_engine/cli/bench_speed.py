"""`murid bench speed`: inference, training and memory figures for docs/BENCHMARKS.md.

    murid bench speed [--project DIR] [--size WxH] [--threads N] [--seconds S] [--no-onnx]
                      [--no-training | --training-preset NAME --training-iterations N
                       --training-repeats N [--no-loader | --loader-size WxH --loader-batches N]]
                      [--memory [--memory-images N,M] [--memory-size WxH]
                       [--memory-commands predict,evaluate,pseudo]] [--json [FILE]]

By default it takes about a minute on two cores: teacher and student ms per image in PyTorch and
onnxruntime, and the training throughput with the engine's overhead over a bare loop (issue 7,
item 3), and the loader's images/s from the decoded-image cache and from the files
(`data.cache` disk vs off, issue 17). `--memory` adds the peak memory of predict, evaluate and pseudo at two dataset sizes,
which costs a few minutes more (registered by bench_cmd).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from murid_engine.errors import UserError

from .json_output import emit_json

OVERHEAD_LIMIT = 0.10  # issue 7, item 3: the engine's step costs at most 10% more than a bare loop


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive WIDTHxHEIGHT, e.g. 256x128")
    return int(m.group(1)), int(m.group(2))


def parse_counts(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not two image counts N,M, e.g. 100,1000")
    return int(m.group(1)), int(m.group(2))


def parse_commands(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def register_speed(which) -> None:
    speed = which.add_parser("speed", help="ms per image (PyTorch, onnxruntime), training images/s, "
                                           "peak memory",
                             description="Time the teacher (its MR attention to the source bank "
                                         "included) and the student on one image after a warm-up, in "
                                         "PyTorch and onnxruntime; measure training throughput and its "
                                         "overhead over a bare loop; with --memory, the peak memory "
                                         "of predict, evaluate and pseudo at two dataset sizes.")
    speed.add_argument("--project", type=Path, metavar="DIR",
                       help="a project with a teacher and a student (default: untrained cpu-demo models)")
    speed.add_argument("--size", type=parse_size, metavar="WxH",
                       help="input size (default: the project's target images, or 256x128)")
    speed.add_argument("--threads", type=int, default=None,
                       help="CPU threads (default: torch's current count)")
    speed.add_argument("--seconds", type=float, default=1.0,
                       help="least time spent timing each model (1.0)")
    speed.add_argument("--no-onnx", dest="onnx", action="store_false",
                       help="skip the onnxruntime figures")
    speed.add_argument("--no-training", dest="training", action="store_false",
                       help="skip the training throughput, overhead and loader figures")
    speed.add_argument("--training-preset", default="cpu-demo", metavar="NAME",
                       help="preset whose network, crop and batch the training figures use (cpu-demo)")
    speed.add_argument("--training-iterations", type=int, default=30, metavar="N",
                       help="timed training iterations per run, engine and bare loop each (30)")
    speed.add_argument("--training-repeats", type=int, default=1, metavar="N",
                       help="runs of each, alternating; the medians are reported (1)")
    speed.add_argument("--no-loader", dest="loader", action="store_false",
                       help="skip the loader figures (images/s with data.cache disk and off)")
    speed.add_argument("--loader-size", type=parse_size, default=(1024, 512), metavar="WxH",
                       help="image size of the loader runs' SynthCity set (1024x512)")
    speed.add_argument("--loader-batches", type=int, default=20, metavar="N",
                       help="timed batches of each loader run (20)")
    speed.add_argument("--memory", action="store_true",
                       help="also measure the peak memory of predict, evaluate and pseudo on two "
                            "dataset sizes (a minute or two)")
    # Defaults are filled in only with --memory, so that one of these without it is refused.
    speed.add_argument("--memory-images", type=parse_counts, metavar="N,M",
                       help="target image counts of the two memory runs (100,1000)")
    speed.add_argument("--memory-size", type=parse_size, metavar="WxH",
                       help="image size of the memory runs' SynthCity sets (256x128)")
    speed.add_argument("--memory-commands", type=parse_commands, metavar="LIST",
                       help="which commands the memory runs measure (predict,evaluate,pseudo)")
    speed.add_argument("--json", dest="json_out", nargs="?", const="-", metavar="FILE",
                       help="print the results as JSON only (or write them to FILE)")
    speed.set_defaults(run=run_speed_cmd)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_speed_cmd(args) -> int:
    # Every option is checked before anything is measured: a typo must not cost a minute.
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be 1 or more, not {args.threads}")
    if not args.seconds > 0:
        raise UserError(f"--seconds must be positive, not {args.seconds}")
    if args.json_out not in (None, "-") and Path(args.json_out).is_dir():
        raise UserError(f"--json {args.json_out} is a folder; give a file name")
    if args.project is not None and not args.project.is_dir():
        raise UserError(f"--project {args.project} is not a folder")
    if args.training and min(args.training_iterations, args.training_repeats) < 1:
        raise UserError("--training-iterations and --training-repeats must be 1 or more, not "
                        f"{args.training_iterations} and {args.training_repeats}")
    if args.loader_batches < 1:
        raise UserError(f"--loader-batches must be 1 or more, not {args.loader_batches}")
    if args.training:
        from murid_engine.config import load_preset

        load_preset(args.training_preset)  # an unknown preset is one sentence now, not after the timing
    memory_cfg = memory_config(args)
    from murid_engine.bench.speed import bench_speed

    result = bench_speed(args.project, args.size, args.threads, min_seconds=args.seconds, onnx=args.onnx)
    if args.training:
        _stderr(f"timing {args.training_iterations} training iterations of the {args.training_preset} "
                "preset, engine and bare loop")
        result["training"] = training_figures(args.training_preset, args.threads or result["threads"],
                                              args.training_iterations, args.training_repeats)
    if args.training and args.loader:  # the training batches' cost, part of the training figures
        from murid_engine.bench.loader_speed import measure_loader_speed
        from murid_engine.config import load_preset

        w, h = args.loader_size
        _stderr(f"timing the {args.training_preset} preset's batches from {w}x{h} images, "
                "data.cache disk and off")
        result["loader"] = measure_loader_speed(load_preset(args.training_preset), args.loader_size,
                                                batches=args.loader_batches)
    if memory_cfg is not None:
        from murid_engine.bench.memory import measure_memory

        result["memory"] = measure_memory(memory_cfg, progress=_stderr).to_json()
    if emit_json(result, args.json_out):
        return 0
    print(format_speed(result))
    return 0


def memory_config(args):
    """The --memory settings (None without --memory), checked; a --memory-* option alone is refused."""
    from murid_engine.bench.memory import COMMANDS, MemoryConfig

    given = [f"--{name.replace('_', '-')}" for name in ("memory_images", "memory_size", "memory_commands")
             if getattr(args, name) is not None]
    if not args.memory:
        if given:
            raise UserError(f"{given[0]} only applies with --memory")
        return None
    return MemoryConfig(args.memory_images or (100, 1000), args.memory_size or (256, 128), args.threads or 1,
                        args.memory_commands or COMMANDS).validate()


def training_figures(preset: str, threads: int, iterations: int, repeats: int) -> dict[str, Any]:
    """Training images/s and the overhead of the engine's step over a bare loop of the same
    network (murid_engine.bench.training_speed), for `preset` on a small SynthCity set made here
    at the preset's crop size (timing needs no real data: the crop sets the cost)."""
    try:
        from murid_engine.bench.training_speed import measure_training_speed
    except ImportError:  # a checkout from before the training benchmark: the other figures still count
        return {"available": False, "note": "not measured: this checkout has no murid_engine.bench.training_speed"}
    from murid_engine.config import load_preset
    from murid_engine.synthcity import SynthConfig, generate

    cfg = load_preset(preset)
    w, h = cfg.data.crop
    # Enough images that the loader's shuffled passes and the bare loop's batches differ.
    n = max(16, 4 * cfg.data.batch_size)
    with tempfile.TemporaryDirectory(prefix="murid-training-data-") as tmp:
        data = Path(tmp) / "synthcity"
        generate(data, SynthConfig(n_source=n, n_target=n, n_val=2, width=max(32, w), height=max(32, h)))
        spec = f"synthcity:{data}"
        speed = measure_training_speed(cfg, spec, spec, iterations=iterations, threads=threads,
                                       workers=cfg.data.workers, repeats=repeats)
    out = {"available": True, "preset": preset, **speed.to_json(), "overhead_limit": OVERHEAD_LIMIT}
    out["pass"] = speed.overhead_ratio <= OVERHEAD_LIMIT
    return out


def _machine_lines(m: dict[str, Any]) -> list[str]:
    load = " ".join(f"{x:g}" for x in m["load_average"]) if m.get("load_average") else "unknown"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    lines = [f"machine  {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable){gpu}, load average {load}",
             f"software torch {m['torch']} ({m['torch_threads']} thread(s)), onnxruntime "
             f"{m['onnxruntime'] or 'not installed'}, Python {m['python']}"]
    if m.get("busy"):
        lines.append(f"warning  the load average was {m['load_average'][0]:g} on {m['usable_cores']} usable cores "
                     "before timing: other work shared the CPU, so these are not a quiet machine's figures")
    return lines


def _inference_lines(r: dict[str, Any]) -> list[str]:
    w, h = r["input_size"]
    ort = r.get("onnxruntime") or {}
    lines = [f"models   {r['models']}",
             f"input    {w}x{h}, batch 1, {r['threads']} thread(s), {r['device']}; median ms per image",
             "",
             f"{'':<11}{'PyTorch':>9}" + (f"{'onnxruntime':>13}" if ort.get("available") else "")]

    def row(label: str, key: str, unit: str, note: str = "") -> str:
        fmt = "{:.2f}" + unit
        cell = (f"{fmt.format(ort[key]) if key in ort else '':>13}" if ort.get("available") else "")
        return f"{label:<11}{fmt.format(r[key]):>9}{cell}{note}"

    lines.append(row("teacher_ms", "teacher_ms", "", "   (with its source bank; its keys and values cached)"))
    if "teacher_uncached_ms" in r:  # absent from JSON written before the cache
        lines.append(row("  uncached", "teacher_uncached_ms", "", "   (the bank's keys and values projected per image)"))
    lines += [row("student_ms", "student_ms", ""), row("speedup", "speedup", "x")]
    if ort and not ort.get("available"):
        lines.append(f"onnxruntime: {ort['note']}")
    return lines


def _training_lines(t: dict[str, Any]) -> list[str]:
    if not t["available"]:
        return [f"training {t['note']}"]
    w, h = t["crop"]
    verdict = "PASS" if t["pass"] else "FAIL"
    runs = "" if len(t["engine_runs_ms"]) == 1 else (
        f" (runs: engine {', '.join(f'{x:g}' for x in t['engine_runs_ms'])}; "
        f"bare {', '.join(f'{x:g}' for x in t['bare_runs_ms'])})")
    return [f"training {t['preset']} adapt step (MR on), batch {t['batch']}+{t['batch']} crops of {w}x{h}, "
            f"{t['threads']} thread(s), {t['workers']} loader worker(s), {t['device']}; "
            f"{t['iterations']} timed iterations after {t['warmup_iters']}",
            f"images/s {t['images_per_s']:.1f} through the engine (source + target)",
            f"ms/iter  engine {t['engine_ms']:.1f}, bare loop over preloaded tensors {t['bare_ms']:.1f}{runs}",
            f"overhead {100 * t['overhead_ratio']:+.1f}% over the bare loop; target <= "
            f"{100 * t['overhead_limit']:.0f}%: {verdict}"]


def _loader_lines(lo: dict[str, Any]) -> list[str]:
    w, h = lo["image_size"]
    cw, ch = lo["crop"]
    disk, off = lo["disk"], lo["off"]
    return [f"loader   batches of {lo['batch']}+{lo['batch']} crops of {cw}x{ch} from {w}x{h} PNGs, "
            f"{lo['workers']} worker(s); {lo['batches']} timed batches",
            f"images/s data.cache=disk {disk['images_per_s']:.1f} (cache built in {disk['prepare_s']:.1f} s), "
            f"data.cache=off {off['images_per_s']:.1f} (decodes every crop's image)"]


def _memory_lines(mem: dict[str, Any]) -> list[str]:
    small, large = mem["images"]
    w, h = mem["size"]
    lines = [f"memory   peak RSS per command, {small} vs {large} images of {w}x{h}, "
             f"{mem['threads']} thread(s), CPU (a process importing torch and the models: {mem['floor_mb']:.0f} MB)",
             f"rule     {mem['rule']}",
             f"{'command':<10}{f'{small} img':>10}{f'{large} img':>10}{'growth':>9}{'extra':>10}",
             ]
    for name, c in mem["commands"].items():
        peaks = c["peak_rss_mb"]
        verdict = "PASS" if c["pass"] else "FAIL"
        lines.append(f"{name:<10}{peaks[str(small)]:>7.0f} MB{peaks[str(large)]:>7.0f} MB"
                     f"{c['growth']:>8.2f}x{round(c['extra_mb']):>+7d} MB  {verdict}")
    return lines


def format_speed(result: dict[str, Any]) -> str:
    lines = _machine_lines(result["machine"]) + _inference_lines(result)
    if "training" in result:
        lines += [""] + _training_lines(result["training"])
    if "loader" in result:
        lines += [""] + _loader_lines(result["loader"])
    if "memory" in result:
        lines += [""] + _memory_lines(result["memory"])
    return "\n".join(lines)
