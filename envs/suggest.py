""" "Did you mean ...?" for mistyped names: sub-commands, config keys, agent names.

Pure functions over strings and pydantic models (no torch, no I/O), so every error path can use them.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices nearest to ``word`` (difflib ratio >= 0.6), best first; case is ignored."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[f] for f in found]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'train'?)"`` or ``""``: ready to append to an error message."""
    found = close_matches(word, choices)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(f) for f in found) + "?)"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``Model``, ``Model | None``, ``Optional[Model]``; else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key a config model accepts (``env.tasks``, ``act_q.lr``, ...), sections included."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        sub = _model_of(field.annotation)
        if sub is not None:
            keys += config_keys(sub, key + ".")
    return keys


def unknown_key_hint(
    model: type[BaseModel] | None, loc: Sequence[str | int], extra: Iterable[str] = (), prefix: str = ""
) -> str:
    """A hint for an unknown key at ``loc``: a close spelling, or the same name in another section.

    ``extra``: more valid dotted keys (e.g. a dict-typed section validated by another model);
    ``prefix``: where ``model`` sits in a bigger config (``env.``), both in ``loc`` and in the hint.
    """
    if model is None:
        return ""
    key = ".".join(str(p) for p in loc)
    valid = list(
        dict.fromkeys([prefix + k for k in config_keys(model)] + list(extra))
    )  # sections may overlap
    last = str(loc[-1])
    # Same name one level elsewhere first (``tasks`` -> ``env.tasks``), then close spellings.
    moved = [k for k in valid if k.rsplit(".", 1)[-1] == last and k != key]
    if moved:
        return " (did you mean " + " or ".join(repr(m) for m in moved[:3]) + "?)"
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = [k[len(parent) :] for k in valid if k.startswith(parent) and "." not in k[len(parent) :]]
    found = close_matches(last, siblings, n=2)
    if found:
        return " (did you mean " + " or ".join(repr(parent + f) for f in found) + "?)"
    return did_you_mean(key, valid)
