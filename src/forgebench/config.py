"""Config checking with messages that name the key, before any job starts."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from forgebench.errors import ForgebenchError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, naming the file in the error if it does not parse."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ForgebenchError(f"{path} is not valid YAML: {exc}") from exc


def _key_path(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            name = f"{where}.{key}" if where != "(top level)" else key
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            hints.append(f"unknown config key {name!r}{hint}; allowed here: {', '.join(allowed)}")
        return "; ".join(hints)
    return f"config key {where!r}: {error.message}"


def coerce_limits(config: dict[str, Any]) -> None:
    """Turn ``limits`` values given as digit strings into integers, in place.

    Profiles pass ``limits`` through ``--config limits={cpus: 2, ...}``, and Snakemake parses
    the values of such a mapping as strings; the schema then checks the integers.
    """
    limits = config.get("limits")
    if not isinstance(limits, dict):
        return
    for key, value in limits.items():
        if isinstance(value, str) and value.strip().isdigit():
            limits[key] = int(value)


def _local_registry(base: Path) -> Registry:
    """Resolve ``$ref: "schemas/<suite>.schema.yaml"`` against files beside the schema."""

    def retrieve(uri: str) -> Resource:
        path = base / uri
        if not path.is_file():
            raise ForgebenchError(f"schema reference {uri!r} not found at {path}")
        contents = load_yaml(path)
        # Fragments declare $schema for snakemake.utils.validate; dropped here so that the
        # default-filling validator class is kept across the reference (jsonschema would
        # switch to the stock class of the declared dialect).
        contents.pop("$schema", None)
        return DRAFT202012.create_resource(contents)

    return Registry(retrieve=retrieve)


def _with_defaults(validator_class: type) -> type:
    """A validator that fills in each property's schema default before checking it
    (the jsonschema FAQ recipe); unlike snakemake's, it follows ``$ref`` into fragments."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator: Any, props: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


def check_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ForgebenchError listing every schema violation, each naming its key; on
    success fill in the schema's defaults, in place.

    The errors are worded for a person: the key path, what was wrong, and for a misspelt
    key the closest allowed name.
    """
    schema_path = Path(schema_path)
    schema = load_yaml(schema_path)
    validator = Draft202012Validator(schema, registry=_local_registry(schema_path.parent))
    errors = sorted(validator.iter_errors(copy.deepcopy(dict(config))), key=lambda e: e.path)
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ForgebenchError(f"invalid config (schema {schema_path}):\n  {lines}")
    filler = _with_defaults(Draft202012Validator)(schema, registry=validator._registry)
    for error in filler.iter_errors(config):  # defaults satisfy the schema; check anyway
        raise ForgebenchError(f"config invalid after filling defaults: {_describe(error)}")
