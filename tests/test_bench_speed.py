"""`murid bench speed`: inference in PyTorch and onnxruntime, training throughput, peak memory."""

from __future__ import annotations

import importlib.util
import json

import pytest

from smoke_runs import murid
from murid_engine.bench.memory import MemoryConfig, MemoryReport, PeakMemory

HAS_TRAINING_BENCH = importlib.util.find_spec("murid_engine.bench.training_speed") is not None
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
QUICK = ("--size", "64x32", "--threads", "1", "--seconds", "0.05")
TRAIN_QUICK = ("--training-preset", "smoke", "--training-iterations", "2",
               "--loader-size", "96x48", "--loader-batches", "2")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[str, dict]:
    """One `bench speed` of the untrained cpu-demo models at 64x32 and a smoke training preset:
    (its text on stdout, its --json FILE parsed)."""
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    result = murid("bench", "speed", *QUICK, *TRAIN_QUICK, "--json", out)
    assert result.code == 0, result.err
    return result.out, json.loads(out.read_text())


@pytest.fixture(scope="module")
def report(run) -> dict:
    return run[1]


def test_json_has_every_inference_figure(report):
    assert report["input_size"] == [64, 32] and report["threads"] == 1
    assert report["teacher_ms"] > 0 and report["student_ms"] > 0 and report["teacher_uncached_ms"] > 0
    assert report["runs"]["teacher_uncached"] >= 5
    assert report["speedup"] == pytest.approx(report["teacher_ms"] / report["student_ms"], rel=1e-2)
    assert report["runs"]["teacher"] >= 5 and report["runs"]["student"] >= 5


def test_json_names_the_machine(report):
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1 and 1 <= m["usable_cores"] <= m["cores"]
    assert m["torch_threads"] == 1 and m["torch"] and m["python"]
    assert m["onnxruntime"] == (report["onnxruntime"].get("version") if HAS_ORT else None)
    assert m["busy"] == (m["load_average"][0] > m["usable_cores"] / 2)


@pytest.mark.skipif(not HAS_ORT, reason="onnx or onnxruntime not installed")
def test_onnxruntime_figures_beside_pytorch(report):
    ort = report["onnxruntime"]
    assert ort["available"] and ort["provider"] == "CPUExecutionProvider" and ort["threads"] == 1
    assert ort["teacher_ms"] > 0 and ort["student_ms"] > 0
    assert ort["speedup"] == pytest.approx(ort["teacher_ms"] / ort["student_ms"], rel=1e-2)


def test_missing_onnxruntime_is_one_line_not_a_failure(monkeypatch):
    from murid_engine.bench import speed

    monkeypatch.setattr(speed, "onnx_missing", lambda: "onnxruntime not installed: no onnxruntime figures")
    result = murid("bench", "speed", *QUICK, "--no-training")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if "onnxruntime not installed" in line]
    assert len(lines) == 1 and "teacher_ms" in result.out


def test_training_throughput_and_overhead(report):
    t = report["training"]
    assert t["available"] == HAS_TRAINING_BENCH
    if not HAS_TRAINING_BENCH:
        pytest.skip("murid_engine.bench.training_speed is not in this checkout")
    assert t["preset"] == "smoke" and t["crop"] == [64, 32] and t["iterations"] == 2 and t["threads"] == 1
    assert t["engine_ms"] > 0 and t["bare_ms"] > 0 and t["images_per_s"] > 0
    assert t["overhead_ratio"] == pytest.approx(t["engine_ms"] / t["bare_ms"] - 1, abs=2e-3)
    assert t["overhead_limit"] == 0.10 and t["pass"] == (t["overhead_ratio"] <= 0.10)


def test_loader_images_per_second_from_the_cache_and_from_the_files(run):
    lo = run[1]["loader"]
    assert lo["image_size"] == [96, 48] and lo["batches"] == 2 and lo["crop"] == [64, 32]
    assert lo["disk"]["images_per_s"] > 0 and lo["off"]["images_per_s"] > 0
    line = next(line for line in run[0].splitlines() if line.startswith("images/s data.cache=disk"))
    assert "data.cache=off" in line


def test_text_table_states_machine_runtimes_and_verdicts(run):
    text = run[0]
    assert text.startswith("machine ") and "torch " in text
    assert ("warning  the load average" in text) == run[1]["machine"]["busy"]
    header = next(line for line in text.splitlines() if "PyTorch" in line)
    assert ("onnxruntime" in header) == HAS_ORT
    assert "teacher_ms" in text and "student_ms" in text
    assert next(line for line in text.splitlines() if line.startswith("  uncached")).split()[1] == (
        f"{run[1]['teacher_uncached_ms']:.2f}")
    if HAS_TRAINING_BENCH:
        overhead = next(line for line in text.splitlines() if line.startswith("overhead"))
        assert "target <= 10%" in overhead and ("PASS" in overhead or "FAIL" in overhead)


@pytest.mark.parametrize("args, fragment", [
    (("--threads", "0"), "--threads must be 1 or more"),
    (("--seconds", "0"), "--seconds must be positive"),
    (("--memory", "--memory-images", "20,5"), "the first smaller"),
    (("--memory", "--memory-commands", "predict,train"), "--memory-commands takes"),
    (("--memory", "--memory-size", "16x16"), "outside 32..4096"),
    (("--memory-images", "100"), "is not two image counts"),
    (("--memory-size", "64x32"), "--memory-size only applies with --memory"),
    (("--project", "/nonexistent/project"), "is not a folder"),
    (("--training-iterations", "0"), "--training-iterations and --training-repeats must be 1 or more"),
    (("--training-preset", "no-such-preset"), "no-such-preset"),
    (("--loader-batches", "0"), "--loader-batches must be 1 or more, not 0"),
])
def test_bad_options_are_one_sentence(args, fragment):
    assert fragment in murid("bench", "speed", *args).error_line()


def test_json_to_a_folder_is_refused(tmp_path):
    assert "is a folder" in murid("bench", "speed", "--json", tmp_path).error_line()


def test_memory_growth_and_rule():
    report = MemoryReport(MemoryConfig(counts=(10, 100)), [
        PeakMemory("predict", 10, 300.0, 1.0), PeakMemory("predict", 100, 330.0, 5.0),
        PeakMemory("pseudo", 10, 300.0, 1.0), PeakMemory("pseudo", 100, 900.0, 9.0)], floor_mb=250.0)
    out = report.to_json()
    assert out["commands"]["predict"]["growth"] == 1.1 and out["commands"]["predict"]["pass"]
    assert out["commands"]["pseudo"]["growth"] == 3.0 and not out["commands"]["pseudo"]["pass"]
    assert out["commands"]["pseudo"]["extra_mb"] == 600.0 and "1.2x" in out["rule"]


def test_memory_runs_the_command_at_both_counts(tmp_path):
    """The real thing at toy sizes, one command: the project trains and both counts are measured."""
    out = tmp_path / "speed.json"
    result = murid("bench", "speed", *QUICK, "--no-onnx", "--no-training", "--memory",
                   "--memory-images", "3,8", "--memory-size", "64x32", "--memory-commands", "predict",
                   "--json", out)
    assert result.code == 0, result.err
    mem = json.loads(out.read_text())["memory"]
    assert mem["images"] == [3, 8] and list(mem["commands"]) == ["predict"]
    peaks = mem["commands"]["predict"]["peak_rss_mb"]
    assert peaks["3"] > mem["floor_mb"] > 0 and peaks["8"] > mem["floor_mb"]
    assert "predict" in result.out and "rule" in result.out
