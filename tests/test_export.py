"""`murid export`: the student runs outside this project, in onnxruntime and plain TorchScript."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from smoke_runs import SUBPROCESS_ENV, copy_project, murid, one_thread, smoke_project
from murid_engine.model_store import load_model

SIZES = ((64, 32), (50, 38))  # (w, h): the trained size and another one (dynamic axes)

# Runs in a fresh interpreter that never imports murid_engine: what a deployment has.
OUTSIDE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort
    import torch

    ts_path, onnx_path, folder = sys.argv[1:4]
    scripted = torch.jit.load(ts_path)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = json.load(open(folder + "/inputs.json"))
    for name in names:
        x = np.load(folder + "/" + name + ".npy")
        with torch.no_grad():
            np.save(folder + "/" + name + ".ts.npy", scripted(torch.from_numpy(x)).numpy())
        np.save(folder + "/" + name + ".onnx.npy", session.run(["logits"], {"image": x})[0])
    assert not any(m.startswith("murid_engine") for m in sys.modules), "murid_engine was imported"
    print("ok", len(names))
""")


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("export")
    _, project = smoke_project(root)
    files = {"project": project}
    for fmt, name in (("torchscript", "student.ts.pt"), ("onnx", "student.onnx")):
        out = root / name
        result = murid("export", "--project", project, "--format", fmt, "--out", out)
        assert result.code == 0, result.err
        assert out.is_file() and "argmax agreement" in result.out
        files[fmt] = out
    return files


def test_exports_agree_with_the_pytorch_student_outside_the_project(exported, tmp_path):
    student = load_model(exported["project"] / "checkpoints" / "student.pt").model
    gen = torch.Generator().manual_seed(3)
    inputs = {}
    for n, (w, h) in enumerate(SIZES, start=1):
        name = f"x{w}x{h}"
        inputs[name] = torch.rand(n, 3, h, w, generator=gen)  # batch 1 and 2: N is dynamic too
        np.save(tmp_path / f"{name}.npy", inputs[name].numpy())
    (tmp_path / "inputs.json").write_text(json.dumps(list(inputs)))
    script = tmp_path / "outside.py"
    script.write_text(OUTSIDE)
    run = subprocess.run([sys.executable, str(script), str(exported["torchscript"]),
                          str(exported["onnx"]), str(tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**_env(), **SUBPROCESS_ENV})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "2"]
    for name, x in inputs.items():
        with torch.no_grad():
            ref = student(x)["out"].numpy()
        for fmt in ("ts", "onnx"):
            got = np.load(tmp_path / f"{name}.{fmt}.npy")
            assert got.shape == ref.shape == (x.shape[0], 19, x.shape[2], x.shape[3])
            agree = (got.argmax(1) == ref.argmax(1)).mean()
            assert agree >= 0.999, (name, fmt, agree)
            assert np.abs(got - ref).max() < 1e-3, (name, fmt)


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_exported_files_carry_their_metadata(exported):
    with zipfile.ZipFile(exported["torchscript"]) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/murid.json"))
        meta = json.loads(archive.read(name))
    assert meta["classes"][0] == "road" and len(meta["classes"]) == 19
    assert meta["palette"][0] == [128, 64, 128] and "[0, 1]" in meta["input"]
    import onnx

    model = onnx.load(str(exported["onnx"]))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["murid"])["classes"] == meta["classes"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_default_output_goes_into_the_projects_exports(exported, tmp_path):
    project = copy_project(exported["project"], tmp_path / "p")
    result = murid("export", "--project", project, "--format", "onnx")
    assert result.code == 0, result.err
    assert (project / "exports" / "student.onnx").is_file()


def test_a_lone_student_checkpoint_exports_and_loads(exported, tmp_path):
    lone = tmp_path / "student.pt"
    lone.write_bytes((exported["project"] / "checkpoints" / "student.pt").read_bytes())
    loaded = load_model(lone)  # no project folder: the configuration travels in the file
    assert loaded.name == "student"
    out = tmp_path / "lone.onnx"
    result = murid("export", "--checkpoint", lone, "--format", "onnx", "--out", out, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["format"] == "onnx" and min(report["agreement"].values()) >= 0.999


def test_export_errors_are_one_sentence(exported, tmp_path):
    project = copy_project(exported["project"], tmp_path / "p")
    (project / "checkpoints" / "student.pt").unlink()
    line = murid("export", "--project", project, "--format", "onnx", "--out", tmp_path / "a.onnx").error_line()
    assert "no student" in line and "murid distill" in line
    line = murid("export", "--project", exported["project"], "--format", "onnx",
                 "--out", tmp_path / "missing" / "a.onnx").error_line()
    assert "does not exist" in line
    line = murid("export", "--project", exported["project"], "--format", "tflite").error_line()
    assert "invalid choice" in line


@pytest.mark.parametrize("cancel_at", [1, 2])
def test_export_reports_its_steps_and_a_cancel_keeps_no_file(exported, tmp_path, cancel_at):
    from murid_engine.export import export_student
    from murid_engine.jobs import StopRequested
    from murid_engine.model_store import project_model
    from murid_engine.project import Project

    student = project_model(Project.open(exported["project"]), "student").model
    out, steps = tmp_path / "student.ts.pt", []

    def on_step(done, total):
        steps.append((done, total))
        if done == cancel_at:
            raise StopRequested  # cancelled after the trace (1) or after the first check (2)
    with pytest.raises(StopRequested):
        export_student(student, "torchscript", out, (64, 32), on_step=on_step)
    assert steps == [(k, 3) for k in range(1, cancel_at + 1)] and not out.exists()
    steps.clear()
    result = export_student(student, "torchscript", out, (64, 32), on_step=lambda d, t: steps.append(d))
    assert steps == [1, 2, 3] and out.is_file() and len(result.agreement) == 2
