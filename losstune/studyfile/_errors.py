"""Pydantic's errors rendered as one line: the dotted key path of the study file, what is wrong
and what is allowed (pydantic reports one error per union member; the one the user meant is
kept).

Layer: domain.
"""

from __future__ import annotations

from typing import Any

from pydantic import (BaseModel, ValidationError)


import losstune.studyfile._schema as _schema
from losstune.studyfile._schema import Choices, Range, StudySpec


def _is_type_tag(item: Any) -> bool:
    """Pydantic puts the union member it tried (``float``, ``Range``, ``function-after[...]``,
    ``literal[...]``) into an error's location; it is not a key of the study file."""
    return isinstance(item, str) and (
        item in ("int", "float", "str", "bool") or _union_member((item,)) is not None
        or item.startswith(("function-", "literal[", "tuple[", "constrained-")))


def _model_names() -> set[str]:
    return {cls.__name__ for cls in vars(_schema).values()
            if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel}


def _key_path(loc: tuple) -> str:
    parts: list[str] = []
    models = _model_names()
    for n, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        # A section's model name (racing = {..} tried as RacingSpec) is a union member too;
        # the last item is kept: it may be the user's own unknown key.
        elif not _is_type_tag(item) and not (item in models and n < len(loc) - 1):
            parts.append(str(item))
    return ".".join(parts)


def _friendly(error: dict[str, Any]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    if kind == "finite_number":
        return f"must be a finite number, got {error.get('input')!r}"
    msg = msg.replace("Value error, ", "").replace("Input should be", "must be")
    got = error.get("input")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        msg += f", got {got!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        interval = _interval(error["loc"])
        msg = (f"must lie in {interval}" if interval else msg) + f", got {got!r}"
    return msg


def _model_in(annotation: Any) -> Any:
    """The section model inside a field's annotation (``Union[bool, tuple[Baseline, ...]]``
    gives Baseline), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(loc: tuple) -> tuple[Any, Any]:
    """(the model holding the last key of ``loc``, that key's FieldInfo or None), skipping list
    indices and union member tags; (None, None) where ``loc`` leaves the models."""
    model: Any = StudySpec
    info = None
    models = _model_names()
    items = [i for n, i in enumerate(loc) if not isinstance(i, int) and not _is_type_tag(i)
             and not (i in models and n < len(loc) - 1)]
    for n, item in enumerate(items):
        fields = getattr(model, "model_fields", None) if model is not None else None
        if not fields or item not in fields:
            return (model, None) if n == len(items) - 1 else (None, None)
        info = fields[item]
        if n < len(items) - 1:
            model = _model_in(info.annotation)
    return model, info


def _number(v: Any) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _interval(loc: tuple) -> str:
    """The interval a number field allows (``[0, 1)``), read from its Field constraints."""
    info = _field_at(loc)[1]
    bounds = {kind: getattr(m, kind) for m in getattr(info, "metadata", ())
              if (kind := type(m).__name__.lower()) in ("gt", "ge", "lt", "le")}
    if not bounds:
        return ""
    low = (f"({_number(bounds['gt'])}" if "gt" in bounds
           else f"[{_number(bounds['ge'])}" if "ge" in bounds else "(-inf")
    high = (f"{_number(bounds['lt'])})" if "lt" in bounds
            else f"{_number(bounds['le'])}]" if "le" in bounds else "inf)")
    return f"{low}, {high}"


def _union_member(loc: tuple) -> str | None:
    for item in loc:
        if item == "Choices":
            return "Choices"
        if isinstance(item, str) and "Range" in item:
            return "Range"
    return None


def _best_error(err: ValidationError) -> dict[str, Any]:
    """Pydantic reports one error per union member; keep the member the user meant.

    A table with a ``choices`` key means ``{choices = [..]}``, any other table a range.
    """
    errors = [e for e in err.errors() if e["type"] not in ("model_type", "dict_type")] or \
        err.errors()
    choices_missing = any(_union_member(e["loc"]) == "Choices" and e["type"] == "missing"
                          and e["loc"][-1] == "choices" for e in errors)
    intended = "Range" if choices_missing else "Choices"
    candidates = [e for e in errors if _union_member(e["loc"]) in (None, intended)]
    members = [e for e in candidates if _union_member(e["loc"])]
    candidates = members or candidates or errors
    for preferred in ("value_error", "finite_number", "extra_forbidden", "missing",
                      "literal_error", "greater_than", "greater_than_equal", "less_than",
                      "less_than_equal"):
        for e in candidates:
            if e["type"] == preferred:
                return e
    return candidates[0]


def _allowed_keys(error: dict[str, Any]) -> str:
    """For an unknown key, list the keys the enclosing table accepts."""
    member = _union_member(error["loc"])
    if member:
        return "; allowed: " + ", ".join((Range if member == "Range" else Choices).model_fields)
    fields = getattr(_field_at(error["loc"])[0], "model_fields", None)
    return f"; allowed: {', '.join(fields)}" if fields else ""


