"""Load policy files: YAML multi-document files and directories -> a PolicySet.

Every error names the file, the line and a fix hint; nothing invalid reaches
the engine. Called by the CLI (validate/test) and the worker at start and on
reload.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from healer.catalog import Catalog, default_catalog
from healer.index import PolicySet
from healer.policy import (
    CompiledPolicy,
    CompileError,
    PolicyDoc,
    Silence,
    SilenceDoc,
    compile_policy,
    compile_silence,
)

MAX_FILE_BYTES = 2 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")

PathKey = tuple[str | int, ...]
_SCALARS = yaml.SafeLoader("")  # only its scalar constructors are used
# libyaml's parser when PyYAML has it (about 10x faster on large policy sets);
# both report the same node marks, so lines in errors do not change
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadError:
    file: str
    line: int | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class PolicyLoadError(ValueError):
    def __init__(self, errors: list[LoadError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class LoadResult:
    policies: list[CompiledPolicy] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _construct(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> Any:
    """Build Python values from a composed YAML node, recording each path's line."""
    # a key's own line wins over the line where its (block) value starts
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _construct(knode, (*path, "<key>"), {})
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be scalars", knode.start_mark
                )
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", knode.start_mark
                )
            lines[(*path, str(key))] = knode.start_mark.line + 1
            out[key] = _construct(vnode, (*path, str(key)), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int | None:
    key = tuple(str(p) if isinstance(p, str) else p for p in loc)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return lines.get(())


def _loc(loc: Iterable[Any]) -> PathKey:
    out: list[str | int] = []
    for p in loc:
        if isinstance(p, str) and p in ("function-after[_fields(), TargetSpec]",):
            continue
        if isinstance(p, str) and ("[" in p or "(" in p):
            continue  # pydantic's union/validator tags, not document keys
        out.append(p)  # pydantic reports aliases ("for", "with") and input keys as written
    return tuple(out)


def _allowed_fields(model: type[BaseModel], loc: PathKey) -> list[str]:
    """Field names allowed at ``loc`` (for typo hints)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fld = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if fld is None:
            return []
        ann = fld.annotation
        current = _model_in(ann)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _pydantic_errors(
    exc: ValidationError, model: type[BaseModel], file: str, base: int, lines: dict[PathKey, int]
) -> list[LoadError]:
    out = []
    errors = exc.errors()
    # a typo is reported once: "unknown field 'tigger' (did you mean 'trigger'?)",
    # without a second "missing required field 'trigger'" for the same mistake
    typos: set[PathKey] = set()
    for err in errors:
        loc = _loc(err["loc"])
        if err["type"] == "extra_forbidden" and loc:
            for near in difflib.get_close_matches(str(loc[-1]), _allowed_fields(model, loc), n=1):
                typos.add((*loc[:-1], near))
    for err in errors:
        if err["type"] == "missing" and _loc(err["loc"]) in typos:
            continue
        loc = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        hint = str((err.get("ctx") or {}).get("hint", ""))
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = f"unknown field {'.'.join(map(str, loc))!r}"
            hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = f"missing required field {'.'.join(map(str, loc))!r}"
        elif err["type"] == "literal_error":
            msg = f"{'.'.join(map(str, loc))}: {msg}"
        else:
            msg = f"{'.'.join(map(str, loc))}: {msg}" if loc else msg
        line = _line_for(loc, lines)
        out.append(LoadError(file, line if line is not None else base, msg, hint))
    return out


def load_documents(text: str, file: str, catalog: Catalog) -> LoadResult:
    res = LoadResult(files=[file])
    try:
        nodes = list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        res.errors.append(
            LoadError(
                file,
                mark.line + 1 if mark else None,
                f"YAML syntax: {getattr(exc, 'problem', exc)}",
                "check indentation and quoting; quote matchers like 'a=\"b\"'",
            )
        )
        return res
    for node in nodes:
        if node is None:
            continue
        lines: dict[PathKey, int] = {}
        base = node.start_mark.line + 1
        try:
            data = _construct(node, (), lines)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            res.errors.append(
                LoadError(file, mark.line + 1 if mark else base, str(getattr(exc, "problem", exc)))
            )
            continue
        if data is None:
            continue  # an empty document ("---" with nothing after it)
        if not isinstance(data, dict):
            res.errors.append(
                LoadError(
                    file, base, "a document must be a mapping with apiVersion, kind, metadata, spec"
                )
            )
            continue
        kind = data.get("kind")
        model: type[PolicyDoc] | type[SilenceDoc]
        if kind == "Policy":
            model = PolicyDoc
        elif kind == "Silence":
            model = SilenceDoc
        else:
            res.errors.append(
                LoadError(
                    file,
                    lines.get(("kind",), base),
                    f"unknown kind {kind!r}",
                    "use kind: Policy or kind: Silence",
                )
            )
            continue
        try:
            doc = model.model_validate(data, context={"catalog": catalog})
        except ValidationError as exc:
            res.errors.extend(_pydantic_errors(exc, model, file, base, lines))
            continue
        if isinstance(doc, SilenceDoc):
            res.silences.append(compile_silence(doc))
            continue
        try:
            res.policies.append(compile_policy(doc, catalog, source=f"{file}:{base}"))
        except CompileError as exc:
            res.errors.append(
                LoadError(file, _line_for(exc.path, lines) or base, exc.message, exc.hint)
            )
    return res


def _files(paths: Iterable[str | Path]) -> tuple[list[Path], list[LoadError]]:
    out: list[Path] = []
    errors: list[LoadError] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file())
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            errors.append(LoadError(str(p), None, "no such file or directory"))
    return out, errors


def load_paths(paths: Iterable[str | Path], catalog: Catalog | None = None) -> LoadResult:
    """Load every YAML file under ``paths``; collect all errors (never stop at the first)."""
    catalog = catalog or default_catalog()
    files, errors = _files(paths)
    total = LoadResult(errors=errors)
    for f in files:
        total.files.append(str(f))
        try:
            if f.stat().st_size > MAX_FILE_BYTES:
                total.errors.append(
                    LoadError(str(f), None, f"file larger than {MAX_FILE_BYTES} bytes")
                )
                continue
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            total.errors.append(LoadError(str(f), None, f"cannot read: {exc}"))
            continue
        r = load_documents(text, str(f), catalog)
        total.policies.extend(r.policies)
        total.silences.extend(r.silences)
        total.errors.extend(r.errors)
    seen: dict[str, str] = {}
    for p in total.policies:
        if p.name in seen:
            total.errors.append(
                LoadError(
                    p.source.rsplit(":", 1)[0],
                    int(p.source.rsplit(":", 1)[1]),
                    f"policy name {p.name!r} already defined at {seen[p.name]}",
                    "policy names must be unique",
                )
            )
        seen[p.name] = p.source
    return total


def load_policy_set(paths: Iterable[str | Path], catalog: Catalog | None = None) -> PolicySet:
    """Load and index; raise PolicyLoadError listing every problem."""
    res = load_paths(paths, catalog)
    if res.errors:
        raise PolicyLoadError(res.errors)
    return PolicySet(res.policies, res.silences)
