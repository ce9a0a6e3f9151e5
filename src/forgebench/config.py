"""Config checking with messages that name the key, before any job starts."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from forgebench.errors import ForgebenchError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, naming the file in the error if it does not parse."""
    try:
        with open(path, encoding="utf-8") as fh:
            # libyaml's loader where PyYAML has it: the schemas take ~2 s in pure Python,
            # which every (no-op) run pays while Snakemake parses the workflow
            return yaml.load(fh, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ForgebenchError(f"{path} is not valid YAML: {exc}") from exc


def close_names(name: str, allowed: Iterable[str], n: int = 3) -> list[str]:
    """The allowed names closest to ``name`` (difflib's ratio), best first: the hint of
    every "unknown name" message, so a typo points at what was meant."""
    return difflib.get_close_matches(name, list(allowed), n=n)


def unknown_name(key: str, name: str, allowed: Iterable[str], what: str) -> ForgebenchError:
    """The error for ``name`` at config ``key`` not being one of ``allowed``, with the
    closest names as a hint and the full list (sorted) after it."""
    allowed = sorted(allowed)
    close = close_names(name, allowed)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    listed = ", ".join(allowed) if allowed else "none"
    return ForgebenchError(f"config key {key!r}: no {what} named {name!r}{hint}; known: {listed}")


def _key_path(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hints = []
        for key in extra:
            close = close_names(key, allowed, n=1)
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
    append_extras(config)


#: Overlay keys whose items are appended to a list of the defaults, not replacing it.
EXTRA_LISTS = {"extra_comparisons": "comparisons", "extra_targets": "targets"}


def append_extras(config: dict[str, Any]) -> None:
    """Append ``extra_comparisons``/``extra_targets`` to ``comparisons``/``targets``, in
    place, and drop the extra keys (so a second call adds nothing twice).

    An overlay's list replaces the default's whole; these keys let an overlay add one
    comparison or target to the defaults instead of repeating them all. Names identify
    verdicts in the report, the history and ``forgebench gate``, so a repeated name in the
    combined list is an error naming both places.
    """
    for extra_key, key in EXTRA_LISTS.items():
        extras = config.pop(extra_key, None) or []
        base = list(config.get(key) or [])
        where: dict[str, str] = {}
        for label, items in ((key, base), (extra_key, extras)):
            for i, item in enumerate(items):
                name = item.get("name")
                if name in where:
                    raise ForgebenchError(
                        f"config key '{label}.{i}.name': {name!r} is already the name of "
                        f"'{where[name]}'; names in {key} and {extra_key} must be unique"
                    )
                where[name] = f"{label}.{i}"
        if extras or key in config:
            config[key] = [*base, *extras]


def check_files(
    paths: Iterable[str | Path], base: str | Path = SCHEMA_PATH.parent / "config.yaml"
) -> dict[str, Any]:
    """The config ``base`` overlaid with ``paths`` in order, as ``snakemake --configfile``
    merges them, checked as the Snakefile checks it when parsed (schema, references, model
    folders, dataset mirror); a ForgebenchError names the file and line or the key at fault.

    Snakemake reads ``--configfile`` itself, before any code of the workflow runs, and its
    YAML error names neither; ``python -m forgebench.config FILE...`` does.
    """
    from snakemake.utils import update_config

    from forgebench import workflow

    config = load_yaml(base) or {}
    for path in paths:
        layer = load_yaml(path)
        if not isinstance(layer, dict):
            raise ForgebenchError(f"{path}: a config overlay is a mapping of keys, not {layer!r}")
        update_config(config, layer)
    root = SCHEMA_PATH.parents[1]
    coerce_limits(config)
    check_config(config)
    workflow.check_references(config)
    workflow.check_model_sources(config, root)
    workflow.check_dataset_mirror(config, root)
    return config


def main(argv: list[str] | None = None) -> int:
    """``python -m forgebench.config [FILE...]``: check config/config.yaml with overlays."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    try:
        check_files(paths)
    except ForgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"config ok: config/config.yaml{''.join(' + ' + str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
