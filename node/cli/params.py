"""Effect parameters on the command line: ``--param NAME=VALUE``, read against the effect's
published schema (``GET /effects``) before anything is uploaded or started, and shown by
``artdag effects``. The node checks them again; this says what is wrong in the terms of the
command line, with the names, types and ranges the effect takes."""

from __future__ import annotations

from typing import Any

from node.cli.client import Api, CliError

Schema = dict[str, Any]
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def effect_schemas(api: Api) -> dict[str, Schema]:
    """Every built-in effect's description, by name."""
    return {item["name"]: item for item in api.call("GET", "/effects")["items"]}


def effect_params(api: Api, effect: str, given: list[str]) -> dict[str, Any]:
    """The ``params`` of a run of ``effect`` from ``--param`` arguments; CliError naming the
    argument and what the effect takes."""
    if not given:
        return {}
    effects = effect_schemas(api)
    if effect not in effects:
        raise CliError(
            f"--param works with a built-in effect ({', '.join(sorted(effects))}); {effect!r} is not one "
            "(an uploaded recipe's parameters are in its YAML)"
        )
    properties: dict[str, Schema] = effects[effect]["params"]["properties"]
    params: dict[str, Any] = {}
    for argument in given:
        name, sep, text = argument.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"--param {argument!r}: write NAME=VALUE, e.g. --param sigma=5")
        if name not in properties:
            takes = f"its parameters are {', '.join(properties)}" if properties else "it takes none"
            raise CliError(f"--param {name}: {effect} has no parameter {name!r}; {takes}")
        if name in params:
            raise CliError(f"--param {name} is given twice")
        params[name] = _value(f"--param {name}={text}", text.strip(), properties[name])
    return params


def _value(argument: str, text: str, schema: Schema) -> Any:
    kind = schema.get("type")
    if kind == "array":
        return [_value(argument, item.strip(), schema["items"]) for item in text.split(",") if item.strip()]
    if kind == "boolean":
        if text.lower() not in (*_TRUE, *_FALSE):
            raise CliError(f"{argument}: must be true or false")
        return text.lower() in _TRUE
    if "enum" in schema:
        if text not in schema["enum"]:
            raise CliError(f"{argument}: must be one of {', '.join(schema['enum'])}")
        return text
    try:
        number: float = int(text) if kind == "integer" else float(text)
    except ValueError:
        raise CliError(
            f"{argument}: must be {'a whole number' if kind == 'integer' else 'a number'}"
        ) from None
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and number < low) or (high is not None and number > high):
        raise CliError(f"{argument}: must be {describe_range(schema)}")
    return number


def describe_range(schema: Schema) -> str:
    """``from 0.1 to 50 px``: a parameter's bounds as a person reads them."""
    low, high, unit = schema.get("minimum"), schema.get("maximum"), schema.get("x-unit", "")
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}{unit}"
    if low is not None:
        return f"at least {low:g}{unit}"
    return f"at most {high:g}{unit}" if high is not None else "any value"


def describe_effect(effect: Schema) -> str:
    """An effect and its parameters, one line each: type, range, default."""
    lines = [f"{effect['name']:<12} {effect.get('description', '')}"]
    for name, schema in effect["params"]["properties"].items():
        kind = schema.get("type", "")
        values = f"one of {', '.join(schema['enum'])}" if "enum" in schema else describe_range(schema)
        default, meaning = schema.get("default"), schema.get("description", "")
        lines.append(f"  --param {name}=  {kind}, {values}, default {default}: {meaning}")
    return "\n".join(lines)
