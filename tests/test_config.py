"""The typed run configuration: presets, strict loading, overrides, ablations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from murid_engine.config import (PRESETS_DIR, apply_overrides, from_dict, list_presets, load_preset,
                                 to_dict)
from murid_engine.errors import UserError
from murid_engine.models.deeplab import ModelConfig
from murid_engine.run_config import STAGES, RunConfig

PRESETS = ("cpu-demo", "paper", "smoke")


def _keys(d: object, prefix: str = "") -> set[str]:
    """Every dotted key of a nested JSON object."""
    if not isinstance(d, dict):
        return set()
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        out |= _keys(v, prefix + k + ".")
    return out


def _diff(a: RunConfig, b: RunConfig) -> set[str]:
    """Dotted keys whose values differ between two configs."""
    da, db = to_dict(a), to_dict(b)

    def walk(x, y, prefix):
        if isinstance(x, dict):
            return set().union(*(walk(x[k], y[k], prefix + k + ".") for k in x))
        return set() if x == y else {prefix[:-1]}
    return walk(da, db, "")


def _write(tmp_path: Path, data: dict, name: str = "run.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# --- presets -------------------------------------------------------------------------------------

def test_shipped_presets_are_the_documented_ones():
    assert set(PRESETS) <= set(list_presets())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_validates_and_is_full(name):
    cfg = load_preset(name)
    assert isinstance(cfg, RunConfig)
    cfg.validate()
    raw = json.loads((PRESETS_DIR / f"{name}.json").read_text())
    # Full: every knob is written in the file, and nothing else.
    assert _keys(to_dict(cfg)) == _keys(raw)
    assert to_dict(cfg) == raw


@pytest.mark.parametrize("name", PRESETS)
def test_round_trip(name):
    cfg = load_preset(name)
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))), "round trip")
    assert again == cfg
    assert isinstance(again.data.crop, tuple) and isinstance(again.curriculum.portions, tuple)


def test_preset_contents_match_their_purpose():
    demo, paper, smoke = (load_preset(n) for n in PRESETS)
    assert demo.model.backbone == "tiny" and demo.model.aspp_rates == (1, 2, 3, 4)
    assert demo.data.crop == (256, 128) and demo.data.batch_size == 8
    assert paper.model.backbone == "resnet101" and paper.model.aspp_rates == (6, 12, 18, 24)
    assert paper.optim.lr == pytest.approx(2.5e-4) and paper.data.crop == (1024, 512)
    assert paper.warmup.iterations >= 10000
    assert smoke.data.crop == (64, 32) and smoke.data.batch_size == 2
    assert smoke.curriculum.rounds == 2
    total = (smoke.warmup.iterations + smoke.adapt.iterations + smoke.distill.iterations
             + smoke.curriculum.rounds * smoke.curriculum.iterations_per_round)
    assert total <= 40
    for cfg in (demo, paper, smoke):
        assert cfg.stages == STAGES


def test_preset_by_path_and_unknown_name(tmp_path):
    path = _write(tmp_path, to_dict(load_preset("smoke")), "mine.json")
    assert load_preset(str(path)) == load_preset("smoke")
    assert load_preset(path) == load_preset("smoke")
    with pytest.raises(UserError, match=r"unknown preset 'nope' \(available: .*cpu-demo.*paper.*smoke"):
        load_preset("nope")
    with pytest.raises(UserError, match="does not exist"):
        load_preset(str(tmp_path / "missing.json"))


def test_bad_json_and_duplicate_keys_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"seed": 1,}')
    with pytest.raises(UserError, match=r"bad\.json is not valid JSON.*line 1"):
        load_preset(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"seed": 1, "seed": 2}')
    with pytest.raises(UserError, match=r"dup\.json.*'seed' appears twice"):
        load_preset(dup)


def test_invalid_range_in_a_file_names_file_and_key(tmp_path):
    data = to_dict(load_preset("smoke"))
    data["curriculum"]["portions"] = [0.5, 0.2]
    with pytest.raises(UserError, match=r"run\.json: curriculum\.portions must be non-decreasing"):
        load_preset(_write(tmp_path, data))


# --- strict loading ------------------------------------------------------------------------------

def test_partial_dict_takes_defaults():
    cfg = from_dict(RunConfig, {"seed": 3, "data": {"batch_size": 4}}, "x")
    assert cfg.seed == 3 and cfg.data.batch_size == 4 and cfg.data.crop == RunConfig().data.crop
    assert from_dict(RunConfig, {}, "x") == RunConfig()


def test_unknown_key_names_dotted_key_file_and_valid_keys():
    with pytest.raises(UserError) as e:
        from_dict(RunConfig, {"model": {"backbon": "tiny"}}, "my.json")
    msg = str(e.value)
    assert "'model.backbon'" in msg and "my.json" in msg
    assert all(k in msg for k in ("backbone", "num_classes", "aspp_rates", "pretrained"))
    with pytest.raises(UserError, match=r"unknown config key 'sed' in my\.json \(valid keys: description, model"):
        from_dict(RunConfig, {"sed": 1}, "my.json")


@pytest.mark.parametrize("data, key, expected", [
    ({"data": {"batch_size": True}}, "data.batch_size", "an integer"),
    ({"data": {"batch_size": 2.0}}, "data.batch_size", "an integer"),
    ({"optim": {"lr": "0.01"}}, "optim.lr", "a number"),
    ({"optim": {"lr": False}}, "optim.lr", "a number"),
    ({"mr": {"enabled": 1}}, "mr.enabled", "true or false"),
    ({"model": {"backbone": 18}}, "model.backbone", "a string"),
    ({"curriculum": {"portions": [0.2, "0.3"]}}, "curriculum.portions[1]", "a number"),
    ({"curriculum": {"portions": 0.2}}, "curriculum.portions", "a list of numbers"),
    ({"data": {"crop": [256, 128, 3]}}, "data.crop", "a list of 2 integers"),
    ({"data": {"crop": [256.5, 128]}}, "data.crop[0]", "an integer"),
    ({"data": {"source_size": [1, "a"]}}, "data.source_size[1]", "an integer"),
    ({"stages": ["warmup", 2]}, "stages[1]", "a string"),
    ({"warmup": {"lr": "fast"}}, "warmup.lr", "a number or null"),
    ({"data": {"source_size": 5}}, "data.source_size", "a list of 2 integers or null"),
    ({"distill": 3}, "distill", "an object of settings"),
])
def test_wrong_types_name_the_key_and_the_type(data, key, expected):
    with pytest.raises(UserError) as e:
        from_dict(RunConfig, data, "cfg.json")
    msg = str(e.value)
    assert f"'{key}'" in msg and "cfg.json" in msg and expected in msg


def test_ints_for_floats_lists_for_tuples_and_null_for_optional():
    cfg = from_dict(RunConfig, {"optim": {"lr": 1}, "data": {"scale": [1, 2], "source_size": None},
                                "warmup": {"lr": None}, "adapt": {"lr": 0.5}}, "x")
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.scale == (1.0, 2.0) and cfg.data.source_size is None
    assert cfg.warmup.lr is None and cfg.adapt.lr == 0.5
    assert cfg.lr_of("warmup") == 1.0 and cfg.lr_of("adapt") == 0.5


def test_top_level_must_be_an_object():
    with pytest.raises(UserError, match=r"list\.json must hold an object of settings, not \[1, 2\]"):
        from_dict(RunConfig, [1, 2], "list.json")


# --- overrides -----------------------------------------------------------------------------------

def test_overrides_parse_each_type_and_leave_the_original_alone():
    base = load_preset("smoke")
    cfg = apply_overrides(base, [
        "data.batch_size=4", "optim.lr=0.02", "optim.momentum=0", "curriculum.portions=[0.2,0.3]",
        "model.backbone=resnet18", "mr.enabled=false", "data.source=gta5:/data/gta 5",
        "warmup.lr=null", "adapt.lr=1e-3", "data.source_size=[1280, 720]", "model.pretrained=123",
        'device="cpu"', "stages=warmup,adapt", "model.aspp_rates=6,12",
    ])
    assert cfg.data.batch_size == 4 and cfg.optim.lr == 0.02
    assert cfg.optim.momentum == 0.0 and isinstance(cfg.optim.momentum, float)
    assert cfg.curriculum.portions == (0.2, 0.3) and cfg.model.backbone == "resnet18"
    assert cfg.mr.enabled is False and cfg.data.source == "gta5:/data/gta 5"
    assert cfg.warmup.lr is None and cfg.adapt.lr == pytest.approx(1e-3)
    assert cfg.data.source_size == (1280, 720) and cfg.model.pretrained == "123"
    assert cfg.device == "cpu" and cfg.stages == ("warmup", "adapt") and cfg.model.aspp_rates == (6, 12)
    assert base == load_preset("smoke")  # a new config, not an edit of the old one
    cfg.validate()


def test_override_of_a_group_keeps_its_other_keys():
    cfg = apply_overrides(load_preset("smoke"), ['model={"backbone": "resnet18"}'])
    assert cfg.model == dataclasses.replace(load_preset("smoke").model, backbone="resnet18")


@pytest.mark.parametrize("item, pattern", [
    ("model.backbon=tiny", r"unknown config key 'model\.backbon'.*valid keys under 'model': backbone"),
    ("sed=1", r"unknown config key 'sed'.*valid keys: description"),
    ("seed.x=1", r"config key 'seed'.*is a value"),
    ("data.batch_size=two", r"'data\.batch_size'.*an integer, not \"two\""),
    ("data.batch_size=2.5", r"'data\.batch_size'.*an integer, not 2\.5"),
    ("mr.enabled=yes", r"'mr\.enabled'.*true or false"),
    ("curriculum.portions=[0.2,x]", r"'curriculum\.portions\[1\]'.*a number"),
    ("data.crop=[1,2,3]", r"'data\.crop'.*a list of 2 integers"),
    ("seed", r"'seed' is not key=value"),
    ("=3", r"'=3' is not key=value"),
])
def test_bad_overrides_name_the_key(item, pattern):
    with pytest.raises(UserError, match=pattern):
        apply_overrides(RunConfig(), [item])


# --- validation and ablations --------------------------------------------------------------------

@pytest.mark.parametrize("item, key", [
    ("curriculum.portions=[0.3,0.2]", "curriculum.portions"),
    ("curriculum.portions=[0,0.5]", "curriculum.portions"),
    ("curriculum.portions=[0.5,1.5]", "curriculum.portions"),
    ("curriculum.portions=[]", "curriculum.portions"),
    ("stages=[adapt,warmup]", "stages"),
    ("stages=[warmup,warmup]", "stages"),
    ("stages=[warmup,train]", "stages"),
    ("warmup.iterations=0", "warmup.iterations"),
    ("distill.iterations=-1", "distill.iterations"),
    ("data.crop=[0,128]", "data.crop"),
    ("data.scale=[1.5,1.0]", "data.scale"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.source=gta6:/x", "gta6"),
    ("mr.points=[5]", "points"),
    ("mr.tokens=0", "tokens"),
    ("mr.norm=batch", "mr norm"),
    ("optim.lr=0", "optim.lr"),
    ("curriculum.ema_decay=1", "curriculum.ema_decay"),
    ("curriculum.threshold_cap=1.5", "curriculum.threshold_cap"),
    ("distill.temperature=0", "distill.temperature"),
    ("distill.kl_pixels=some", "distill.kl_pixels"),
    ("warmup.entropy_weight=0.1", "warmup.entropy_weight"),
    ("student_model.num_classes=16", "num_classes"),
    ("model.num_classes=127", "between 1 and 126"),  # the user's class c is kept as 128 + c
    ("mr.partners=nearest", "mr partners"),
    ("mr.bank_select=-1", "bank_select"),
    ("student_model.backbone=vgg", "student_model"),
    ("device=gpu", "device"),
])
def test_validate_rejects_out_of_range(item, key):
    cfg = apply_overrides(load_preset("smoke"), [item])
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        cfg.validate()


def test_validate_accepts_a_stage_subsequence():
    apply_overrides(load_preset("smoke"), ["stages=[adapt,distill]"]).validate()


@pytest.mark.parametrize("flags, changed", [
    ({}, set()),
    ({"no_mr": True}, {"mr.enabled"}),
    ({"no_curriculum": True}, {"curriculum.enabled"}),
    ({"no_distill": True}, {"distill.from_teacher"}),
    ({"no_mr": True, "no_curriculum": True, "no_distill": True},
     {"mr.enabled", "curriculum.enabled", "distill.from_teacher"}),
])
def test_ablate_flips_exactly_the_right_flags(flags, changed):
    base = apply_overrides(load_preset("cpu-demo"), ["distill.from_teacher=true"])  # cpu-demo: false
    cfg = base.ablate(**flags)
    assert _diff(base, cfg) == changed
    assert cfg.stages == base.stages and cfg.distill.enabled
    assert base == apply_overrides(load_preset("cpu-demo"), ["distill.from_teacher=true"])
    cfg.validate()


def test_data_helpers():
    cfg = apply_overrides(RunConfig(), ["data.source=synthcity:/tmp/sc", "data.crop=[64,32]"])
    assert cfg.data.resolved_source_split() == "source"
    assert cfg.data.augment().crop == (64, 32)
    cfg = apply_overrides(cfg, ["data.source=gta5:/d"])
    assert cfg.data.resolved_source_split() is None
    assert apply_overrides(cfg, ["data.source_split=x"]).data.resolved_source_split() == "x"


def test_model_config_comes_from_the_model_module():
    assert RunConfig().model == ModelConfig()
    assert isinstance(load_preset("paper").student_model, ModelConfig)
