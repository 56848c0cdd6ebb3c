"""Typed, range-checked parameters of effects and node types, with a publishable schema."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["float", "int", "bool", "choice", "floats"]
MAX_LIST = 64


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default, bounds (inclusive) and unit."""

    name: str
    kind: Kind
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def normalize(self, value: Any) -> Any:
        """The canonical value (a float parameter is always a float); ValueError if invalid."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, got {value!r}")
            return value
        if self.kind == "floats":
            if not isinstance(value, list) or len(value) > MAX_LIST:
                raise ValueError(f"must be a list of at most {MAX_LIST} numbers, got {value!r}")
            return [self._number(item) for item in value]
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        return self._number(value)

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            as_float = float(value)
        except OverflowError:
            raise ValueError(
                f"must be from {self.minimum} to {self.maximum}, got a {len(str(value))}-digit number"
            ) from None
        if not math.isfinite(as_float):
            raise ValueError(f"must be finite, got {value!r}")
        if self.kind == "int" and not as_float.is_integer():
            raise ValueError(f"must be a whole number, got {value!r}")
        number: int | float = int(value) if self.kind == "int" else as_float + 0.0  # -0.0 -> 0.0
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise ValueError(f"must be from {self.minimum} to {self.maximum}, got {value!r}")
        return number

    def schema(self) -> dict[str, Any]:
        """A JSON Schema fragment (plus ``x-unit``) for the API and forms."""
        types = {
            "float": "number",
            "int": "integer",
            "bool": "boolean",
            "choice": "string",
            "floats": "number",
        }
        bounds: dict[str, Any] = {"type": types[self.kind]}
        if self.minimum is not None:
            bounds["minimum"] = self.minimum
        if self.maximum is not None:
            bounds["maximum"] = self.maximum
        if self.kind == "floats":
            bounds = {"type": "array", "items": bounds, "maxItems": MAX_LIST}
        schema: dict[str, Any] = {**bounds, "default": self.default, "description": self.description}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.unit:
            schema["x-unit"] = self.unit
        return schema


def normalize_params(
    params: tuple[Param, ...], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(every parameter with defaults filled in, {name: problem}) for the values given."""
    known = {param.name: param for param in params}
    problems = {name: "unknown parameter" for name in given if name not in known}
    values: dict[str, Any] = {}
    for param in params:
        try:
            values[param.name] = param.normalize(given.get(param.name, param.default))
        except ValueError as exc:
            problems[param.name] = str(exc)
    return values, problems
