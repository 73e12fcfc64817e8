"""Typed configuration: nested dataclasses read from JSON with every key and type checked.

`from_dict` turns a JSON object into a dataclass (unknown key or wrong type = one UserError that
names the dotted key and the file); `to_dict` is its inverse; `apply_overrides` applies
`--set key=value` pairs; `load_preset` reads `resources/presets/<name>.json` or a JSON file.
Missing keys take the dataclass default, so a checkpoint written before a field existed still
loads; presets nevertheless list every key so that a user sees every knob.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from murid_engine.errors import UserError
from murid_engine.resources import resource_path
from murid_engine.run_config import RunConfig

T = TypeVar("T")

PRESETS_DIR = resource_path("presets")

# Scalar types as a user reads them in an error: (singular, plural).
_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings"), bool: ("true or false", "true/false values")}


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations left by `from __future__ import annotations`.
    return typing.get_type_hints(cls)


def _optional_inner(tp: Any) -> Any | None:
    """X for `X | None` / Optional[X], else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
        raise TypeError(f"unsupported union annotation {tp!r}: only `X | None` is supported")
    return None


def _describe(tp: Any, plural: bool = False) -> str:
    """How an expected type reads in an error message: 'a list of 2 integers', 'a number or null'."""
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{_describe(inner, plural)} or null"
    if tp in _NAMES:
        return _NAMES[tp][1 if plural else 0]
    if dataclasses.is_dataclass(tp):
        return "objects of settings" if plural else "an object of settings"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list):
        lists = "lists" if plural else "a list"
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"{lists} of {len(args)} {' / '.join(sorted({_describe(a, True) for a in args}))}"
        return f"{lists} of {_describe(args[0], True)}"
    raise TypeError(f"unsupported config annotation {tp!r}")


def _show(value: Any) -> str:
    """The value as the user wrote it in JSON (true, "abc", [1, 2]), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_error(tp: Any, value: Any, key: str, where: str) -> UserError:
    return UserError(f"config key '{key}' in {where} must be {_describe(tp)}, not {_show(value)}")


def _convert(tp: Any, value: Any, key: str, where: str, shown: Any = None) -> Any:
    """`value` (parsed JSON) checked against `tp`, lists made tuples; errors name type `shown`."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _convert(inner, value, key, where, shown=tp)
    shown = shown or tp
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, _prefix=key + ".")
    if tp in _NAMES:
        # bool is a subclass of int in Python, but `true` is never a count; an int is a float.
        accepted = (int, float) if tp is float else tp
        if not isinstance(value, accepted) or (isinstance(value, bool) and tp is not bool):
            raise _type_error(shown, value, key, where)
        return float(value) if tp is float else value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _type_error(shown, value, key, where)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _type_error(shown, value, key, where)
            items = [_convert(a, v, f"{key}[{i}]", where) for i, (a, v) in enumerate(zip(args, value))]
        else:
            items = [_convert(args[0], v, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


def _valid_keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type[T], data: dict, where: str, _prefix: str = "") -> T:
    """An instance of dataclass `cls` from a JSON object; `where` (a file) is named in errors."""
    if not isinstance(data, dict):
        what = f"config key '{_prefix[:-1]}' in {where} must be" if _prefix else f"{where} must hold"
        raise UserError(f"{what} an object of settings, not {_show(data)}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(f"unknown config key '{_prefix}{key}' in {where} "
                            f"(valid keys{' under ' + repr(_prefix[:-1]) if _prefix else ''}: "
                            f"{_valid_keys(cls)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _prefix + f.name, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"config key '{_prefix}{f.name}' is missing in {where}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) as JSON-able dicts and lists; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return {k: to_dict(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


def _parse_value(tp: Any, text: str) -> Any:
    """The JSON value of `--set` text for a field of type `tp`; plain text where it is no JSON."""
    inner = _optional_inner(tp)
    if inner is not None and text.strip() == "null":
        return None
    base = inner if inner is not None else tp
    if base is str:
        # A string field takes the text as typed (so `pretrained=123.pth` stays a string);
        # a JSON string literal ("...") is unquoted.
        if text.startswith('"'):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if typing.get_origin(base) in (tuple, list):
        # `stages=warmup,adapt` and `portions=[0.2,0.3]` both read as lists.
        body = text.strip().removeprefix("[").removesuffix("]")
        return [_parse_value(Any, part.strip()) for part in body.split(",") if part.strip()]
    return text


def apply_overrides(cfg: T, overrides: list[str], where: str = "--set") -> T:
    """A copy of `cfg` with each `dotted.key=value` applied and type-checked."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{where} '{item}' is not key=value (e.g. model.backbone=resnet18)")
        parts = key.split(".")
        node: Any = cfg
        for depth, name in enumerate(parts):
            done = ".".join(parts[:depth])
            if not (dataclasses.is_dataclass(node) and not isinstance(node, type)):
                raise UserError(f"config key '{done}' in {where} {key}=... is a value, "
                                f"not a group of settings")
            if name not in {f.name for f in dataclasses.fields(node)}:
                under = f" under '{done}'" if done else ""
                raise UserError(f"unknown config key '{key}' in {where} "
                                f"(valid keys{under}: {_valid_keys(type(node))})")
            if depth < len(parts) - 1:
                node = getattr(node, name)
        tp = _hints(type(node))[parts[-1]]
        value = _parse_value(tp, text)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            # `model={"backbone": "resnet18"}` changes those keys and keeps the others.
            value = {**to_dict(getattr(node, parts[-1])), **value}
        setattr(node, parts[-1], _convert(tp, value, key, f"{where} {key}={text}"))
    return cfg


def list_presets() -> list[str]:
    """Names of the presets shipped in resources/presets/."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    # json.load silently keeps the last of two equal keys; a preset with both is a mistake.
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise UserError(f"config key '{key}' appears twice in the same object")
        out[key] = value
    return out


def read_json(path: Path) -> Any:
    """A JSON file's content, with a one-sentence error naming the file and the line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def preset_path(name_or_path: str | Path) -> Path:
    """The file of a preset name (`cpu-demo`) or of a path to a JSON file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".json") or "/" in text or "\\" in text or path.is_file():
        if not path.is_file():
            raise UserError(f"preset file {path} does not exist")
        return path
    path = PRESETS_DIR / f"{text}.json"
    if not path.is_file():
        raise UserError(f"unknown preset '{text}' (available: {', '.join(list_presets()) or 'none'})")
    return path


def load_preset(name_or_path: str | Path) -> RunConfig:
    """A validated RunConfig from a preset name or a JSON file."""
    path = preset_path(name_or_path)
    cfg = from_dict(RunConfig, read_json(path), str(path))
    try:
        return cfg.validate()
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
