"""`murid bench gui`: the desktop app's responsiveness (GUI-thread stalls, live re-threshold).

    murid bench gui [--json [FILE]] [--workdir DIR]

The engine never imports Qt: the measurement lives in murid_gui.bench and is imported only when
this benchmark runs. Register with ``register_gui(which)`` beside the other benchmarks.
"""

from __future__ import annotations

from pathlib import Path

from murid_engine.errors import UserError

from .json_output import emit_json


def register_gui(which) -> None:
    p = which.add_parser("gui", help="GUI responsiveness: longest and p99 stall of the GUI thread, "
                                     "re-threshold time of a 2048x1024 pseudo-label",
                         description="Drive the desktop app offscreen through a short smoke training "
                                     "run with live previews and a review session, open the project "
                                     "grown to 50,000 metrics rows and a 3,000-image round, and run the "
                                     "session again beside --competing CPU-bound processes; report the "
                                     "GUI thread's longest and 99th-percentile stall of each (targets: "
                                     "50 ms alone and opening, 100 ms beside a competing process), the "
                                     "time to re-threshold a 2048x1024 pseudo-label (target: under 50 "
                                     "ms) and to outline and relabel a region there (under 30 ms).")
    p.add_argument("--json", dest="json_out", nargs="?", const="-", metavar="FILE",
                   help="print the results as JSON only (or write them to FILE)")
    p.add_argument("--workdir", type=Path, metavar="DIR",
                   help="folder for the benchmark's data and project (default: a temporary one)")
    p.add_argument("--competing", type=int, default=1, metavar="N",
                   help="CPU-bound processes beside the second session (0: no second session)")
    p.add_argument("--worker-nice", type=int, default=None, metavar="N",
                   help="raise the app's worker thread's nice value by N (Linux: per thread)")
    p.set_defaults(run=run_gui_cmd)


def run_gui_cmd(args) -> int:
    if args.json_out not in (None, "-") and Path(args.json_out).is_dir():
        raise UserError(f"--json {args.json_out} is a folder; give a file name")
    if args.workdir is not None and (args.workdir / "project").exists():
        raise UserError(f"{args.workdir / 'project'} exists; give a --workdir without a project in it")
    try:
        from murid_gui.bench import run_gui_bench  # Qt loads here, never with the engine
    except ImportError as exc:
        raise UserError(f"murid bench gui needs the desktop app's packages (PySide6, pyqtgraph): {exc}") from None
    if args.competing < 0:
        raise UserError(f"--competing must be 0 or more, not {args.competing}")
    if args.worker_nice is not None:
        import murid_gui.worker

        murid_gui.worker.WORKER_NICE = args.worker_nice
    result = run_gui_bench(args.workdir, competing=args.competing)
    if emit_json(result, args.json_out):
        return 0
    t = result["training"]
    print(f"max_stall_ms   {result['max_stall_ms']:.1f}  (target < 100)")
    print(f"p99_stall_ms   {result['p99_stall_ms']:.1f}")
    print(f"rethreshold_ms {result['rethreshold_ms']:.1f}  (2048x1024, target < 50)")
    print(f"review live update at 2048x1024: {result['review_live_update_ms_2048x1024']:.1f} ms")
    print(f"training: {t['seconds']:.1f} s, {t['previews_shown']} previews shown, "
          f"max stall {t['max_stall_ms']:.1f} ms; review: max stall {result['review']['max_stall_ms']:.1f} ms")
    big = result["open_large_project"]
    print(f"opening {big['metrics_rows']} metrics rows + a {big['round_images']}-image round: max stall "
          f"{big['max_stall_ms']:.1f} ms (target < 50), shown after {big['seconds_until_shown']:.1f} s")
    region = result["region_outline_relabel_ms_2048x1024"]
    print(f"outline + relabel a region at 2048x1024: {region['total_ms']:.1f} ms (target < 30)")
    if (c := result["competing"]) is not None:
        print(f"beside {c['competing_processes']} CPU-bound process(es): max stall {c['max_stall_ms']:.1f} ms "
              f"(target < 100), p99 {c['p99_stall_ms']:.1f} ms")
    return 0
