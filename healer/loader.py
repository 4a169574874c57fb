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
from typing import Any, Literal, get_args, get_origin

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
# YAML aliases share one node; building values copies it at each use, so a few
# hundred bytes of nested aliases ("billion laughs") expand to gigabytes. Sharing
# a guards block among a few hundred policies stays far below this cap.
MAX_ALIAS_NODES = 10_000
# policies nest about 8 levels deep; the cap keeps recursion far from Python's limit
MAX_DEPTH = 64
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


class _Bounds(yaml.YAMLError):
    """A document that would expand past MAX_ALIAS_NODES or nest past MAX_DEPTH."""

    def __init__(self, line: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = line, message, hint


@dataclass
class _Walk:
    """What _construct has built so far in one file: to bound alias expansion."""

    built: set[int] = field(default_factory=set)  # ids of nodes constructed once
    open: set[int] = field(default_factory=set)  # ids of nodes on the current path
    aliased: int = 0  # values built again through an alias


def _construct(
    node: yaml.Node,
    path: PathKey,
    lines: dict[PathKey, int],
    walk: _Walk,
    alias_line: int | None = None,
) -> Any:
    """Build Python values from a composed YAML node, recording each path's line.

    ``alias_line`` is the line of the alias being expanded (None outside one).
    """
    # a key's own line wins over the line where its (block) value starts
    here = lines.setdefault(path, node.start_mark.line + 1)
    key = id(node)
    if key in walk.open:
        raise _Bounds(
            here,
            "a YAML alias refers to a node that contains it (a self-reference)",
            "an anchor cannot be used inside itself; write the value out",
        )
    if alias_line is None and key in walk.built:
        alias_line = here  # the line of the key (or list) that uses the alias
    if alias_line is not None:
        walk.aliased += 1
        if walk.aliased > MAX_ALIAS_NODES:
            raise _Bounds(
                alias_line,
                f"YAML aliases expand to more than {MAX_ALIAS_NODES} values in this file",
                "aliases nested in aliases multiply (an alias bomb?); "
                "write the values out or share fewer, smaller anchors",
            )
    if len(path) > MAX_DEPTH:
        raise _Bounds(
            here,
            f"the document nests deeper than {MAX_DEPTH} levels",
            "policies need about 8 levels; flatten the structure",
        )
    walk.built.add(key)
    if isinstance(node, yaml.MappingNode):
        walk.open.add(key)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            k = _construct(knode, (*path, "<key>"), {}, walk, alias_line)
            if isinstance(k, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be scalars", knode.start_mark
                )
            if k in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {k!r}", knode.start_mark
                )
            lines[(*path, str(k))] = knode.start_mark.line + 1
            out[k] = _construct(vnode, (*path, str(k)), lines, walk, alias_line)
        walk.open.discard(key)
        return out
    if isinstance(node, yaml.SequenceNode):
        walk.open.add(key)
        items = []
        for i, v in enumerate(node.value):
            if id(v) in walk.built:  # an alias item: its line is the list's
                lines.setdefault((*path, i), here)
            items.append(_construct(v, (*path, i), lines, walk, alias_line))
        walk.open.discard(key)
        return items
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


def _model_at(model: type[BaseModel], loc: PathKey) -> Any:
    """The model that holds the fields at ``loc`` (list indexes skipped), or None."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fld = _field(current, part)
        if fld is None:
            return None
        current = _model_in(fld.annotation)
    return current


def _field(model: Any, name: str | int) -> Any:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return model.model_fields.get(str(name)) or next(
        (f for f in model.model_fields.values() if f.alias == name), None
    )


def _allowed_fields(model: type[BaseModel], loc: PathKey) -> list[str]:
    """Field names allowed at ``loc`` (for typo hints)."""
    current = _model_at(model, loc[:-1])
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _literal_choices(model: type[BaseModel], loc: PathKey) -> list[str]:
    """The values a Literal field at ``loc`` accepts (for did-you-mean hints)."""
    fld = _field(_model_at(model, loc[:-1]), loc[-1]) if loc else None
    out: list[str] = []
    pending = [fld.annotation] if fld is not None else []
    while pending:
        ann = pending.pop()
        if get_origin(ann) is Literal:
            out.extend(str(a) for a in get_args(ann))
        else:
            pending.extend(get_args(ann))
    return out


def _closest(value: Any, choices: list[str]) -> str | None:
    """The choice ``value`` was probably meant to be: same letters in another case, or close."""
    if not isinstance(value, str):
        return None
    for c in choices:
        if c.lower() == value.lower():
            return c
    lowered = {c.lower(): c for c in choices}
    near = difflib.get_close_matches(value.lower(), list(lowered), n=1)
    return lowered[near[0]] if near else None


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
            meant = _closest(err.get("input"), _literal_choices(model, loc))
            hint = f"did you mean {meant!r}?" if meant else hint
        else:
            msg = f"{'.'.join(map(str, loc))}: {msg}" if loc else msg
        line = _line_for(loc, lines)
        out.append(LoadError(file, line if line is not None else base, msg, hint))
    return out


_TOO_DEEP = "the document nests too deeply to load (or an alias refers to itself)"


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
    except RecursionError:
        res.errors.append(LoadError(file, None, _TOO_DEEP, f"nest at most {MAX_DEPTH} levels"))
        return res
    walk = _Walk()
    for node in nodes:
        if node is None:
            continue
        lines: dict[PathKey, int] = {}
        base = node.start_mark.line + 1
        try:
            data = _construct(node, (), lines, walk)
        except _Bounds as exc:
            res.errors.append(LoadError(file, exc.line, exc.message, exc.hint))
            return res  # an alias cap is per file: the next documents would hit it at once
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            res.errors.append(
                LoadError(file, mark.line + 1 if mark else base, str(getattr(exc, "problem", exc)))
            )
            continue
        except RecursionError:
            res.errors.append(LoadError(file, base, _TOO_DEEP, f"nest at most {MAX_DEPTH} levels"))
            continue
        if data is None:
            continue  # an empty document ("---" with nothing after it)
        try:
            _load_document(data, file, base, lines, catalog, res)
        except RecursionError:  # a last resort: _construct bounds depth well below the limit
            res.errors.append(LoadError(file, base, _TOO_DEEP, f"nest at most {MAX_DEPTH} levels"))
    return res


def _load_document(
    data: Any,
    file: str,
    base: int,
    lines: dict[PathKey, int],
    catalog: Catalog,
    res: LoadResult,
) -> None:
    """Validate and compile one document's values into ``res``."""
    if not isinstance(data, dict):
        res.errors.append(
            LoadError(file, base, "a document must be a mapping with apiVersion, kind, metadata, spec")
        )
        return
    kind = data.get("kind")
    model: type[PolicyDoc] | type[SilenceDoc]
    if kind == "Policy":
        model = PolicyDoc
    elif kind == "Silence":
        model = SilenceDoc
    else:
        close = _closest(kind, ["Policy", "Silence"])
        res.errors.append(
            LoadError(
                file,
                lines.get(("kind",), base),
                f"unknown kind {kind!r}",
                f"did you mean {close!r}?" if close else "use kind: Policy or kind: Silence",
            )
        )
        return
    try:
        doc = model.model_validate(data, context={"catalog": catalog})
    except ValidationError as exc:
        res.errors.extend(_pydantic_errors(exc, model, file, base, lines))
        return
    if isinstance(doc, SilenceDoc):
        res.silences.append(compile_silence(doc))
        return
    try:
        res.policies.append(compile_policy(doc, catalog, source=f"{file}:{base}"))
    except CompileError as exc:
        res.errors.append(LoadError(file, _line_for(exc.path, lines) or base, exc.message, exc.hint))


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
