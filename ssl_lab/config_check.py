"""A config checked against its schema before any work, and the config mistakes that Hydra or
OmegaConf find while composing (a value of the wrong type, an unknown key, a mandatory value left
unset, an override that does not parse): each as one line naming the key,
``<key>=<value>: <what it accepts>``, what it accepts read from the key's schema field."""

import dataclasses
import difflib
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf import errors as oc_errors

from ssl_lab.errors import SslLabError
from ssl_lab.schema import CLASSES, declared, describe, finite, schema_nodes, show, value_ok


def check_config(cfg: DictConfig) -> None:
    """Check every key that a schema declares against its range, before any work: the first bad
    one is raised as one line, ``<key>=<value>: <what it accepts>``."""
    try:
        for path, node, kinds, own in schema_nodes(cfg):
            specs = declared(node, kinds)
            if not own:  # a choice without a schema of its own: its group's bases type its keys
                _check_values(cfg, path, _typed(node, specs, path), specs)
                continue
            (kind,) = kinds
            _check_declared(path, node, kind)
            _check_values(cfg, path, node, specs)
            problem = kind.check(node, cfg) if hasattr(kind, "check") else None
            if problem:
                raise SslLabError(f"{path}.{problem}" if path else problem)
    except oc_errors.OmegaConfBaseException as err:
        raise config_error(err) from None


def _check_declared(path: str, node: DictConfig, kind: type) -> None:
    """A key that the schema does not declare: a typo, or a preset's key for another choice."""
    declared = [f.name for f in dataclasses.fields(kind)]
    for key in node.keys():
        if key not in declared:
            full = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), declared, n=1)
            hint = f"did you mean {close[0]}?" if close else f"remove it: ~{full}"
            shown = show(node._get_node(key)._value())
            raise SslLabError(f"{full}={shown}: {path or 'the config'} has no key {key} ({hint})")


def _check_values(
    cfg: DictConfig, path: str, values: Mapping[str, Any], specs: dict[str, dataclasses.Field]
) -> None:
    for name, spec in specs.items():
        if name not in values.keys():  # a dict of a schema-less node: checked as a node
            continue
        value = values[name]
        if not value_ok(spec, value, cfg):
            key = f"{path}.{name}" if path else name
            too_big = isinstance(value, float) and not finite(value)
            note = " (finite, within float32)" if too_big else ""
            given = show(value)
            if isinstance(values, DictConfig) and values._get_node(name)._is_interpolation():
                given = f"{values._get_node(name)._value()} (= {given})"  # names the source
            raise SslLabError(f"{key}={given}: {describe(spec, cfg)}{note}")


def _typed(node: DictConfig, specs: dict[str, dataclasses.Field], path: str) -> dict[str, Any]:
    """The values of ``node`` that ``specs`` declare, converted to their types (OmegaConf's own
    conversion, as composing does for a node with a schema). Dict values are nodes of their own,
    checked as such."""
    typed = {}
    for name, spec in specs.items():
        if isinstance(node._get_node(name), DictConfig):
            continue
        try:
            typed[name] = OmegaConf.merge(_empty(spec), {"value": node[name]}).value
        except oc_errors.ValidationError:
            key = f"{path}.{name}" if path else name
            raise SslLabError(f"{key}={show(node[name])}: {describe(spec)}") from None
    return typed


@functools.cache
def _empty(spec: dataclasses.Field) -> DictConfig:
    """A one-key structured config typed as ``spec`` (merge() leaves it as it is)."""
    holder = dataclasses.make_dataclass("Holder", [("value", spec.type, dataclasses.field())])
    return OmegaConf.structured(holder)


# Mistakes found while composing ------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    return next(
        (line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__
    )


def _field_of(err: oc_errors.OmegaConfBaseException) -> dataclasses.Field | None:
    """The schema field a value error is about (for a list item: the list's field)."""
    node, key = getattr(err, "parent_node", None), getattr(err, "key", None)
    while node is not None and not dataclasses.is_dataclass(OmegaConf.get_type(node)):
        key, node = node._key(), node._get_parent()
    if node is None:
        return None
    return {f.name: f for f in dataclasses.fields(OmegaConf.get_type(node))}.get(str(key))


def _given(err: BaseException | str) -> str:
    """The value a type error quotes."""
    match = re.search(r"Value '(.*)' of type", str(err))
    return match[1] if match else "?"


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _from_message(text: str) -> SslLabError | None:
    """Hydra reports a bad value in a YAML file (a preset, a user's config) as text only:
    ``In 'experiment/x': ValidationError ... Value 'abc' ... full_key: pretext.lr ...
    object_type=TrainedPretextConfig``."""
    if not re.search(r"Value '.*' of type", text):
        return None
    key = re.search(r"full_key: (\S+)", text)
    kind = re.search(r"object_type=(\w+)", text)
    where = re.match(r"In '([^']+)'", text)
    spec = None
    if key and kind and kind[1] in CLASSES:
        name = key[1].rpartition(".")[2].split("[")[0]
        spec = {f.name: f for f in dataclasses.fields(CLASSES[kind[1]])}.get(name)
    if spec is None:
        return None
    source = f" (in {where[1]})" if where else ""
    return SslLabError(f"{key[1]}={_given(text)}: {describe(spec)}{source}")


def config_error(err: BaseException) -> SslLabError | None:
    """A config mistake that Hydra or OmegaConf found (a value of the wrong type, an unknown key,
    a mandatory value left unset, an override that does not parse) as one line naming the key;
    None for anything else (a bug keeps its traceback)."""
    chain = list(_chain(err))
    if not any(isinstance(e, (oc_errors.OmegaConfBaseException, HydraException)) for e in chain):
        return None
    override = None
    for e in chain:
        match = re.match(r"Error merging override (\S+)", str(e)) or re.search(
            r"use \+(\S+=\S*)", str(e)
        )
        override = override or (match[1] if match else None)
    for e in chain:
        if isinstance(e, oc_errors.ValidationError) and (spec := _field_of(e)) is not None:
            return SslLabError(f"{override or f'{e.full_key}={_given(e)}'}: {describe(spec)}")
        if isinstance(e, (oc_errors.ConfigKeyError, oc_errors.ConfigAttributeError)):
            key = e.full_key or str(e.key)
            place, _, name = key.rpartition(".")
            known = [str(k) for k in e.parent_node.keys()] if e.parent_node is not None else []
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "its keys: " + ", ".join(known)
            return SslLabError(
                f"{override or key}: {place or 'the config'} has no key {name} ({hint})"
            )
        if isinstance(e, oc_errors.MissingMandatoryValue) and e.full_key:
            return SslLabError(f"{e.full_key}=???: mandatory: set it ({e.full_key}=...)")
        found = _from_message(str(e))
        if found is not None:
            return found
    first = next(
        e for e in chain if isinstance(e, (oc_errors.OmegaConfBaseException, HydraException))
    )
    key = getattr(first, "full_key", None)
    if key and (raw := _raw(first)) is not None:
        key = f"{key}={raw}"
    key = key or getattr(first, "override", None)
    return SslLabError((f"{key}: " if key else "") + _first_line(first))


def _raw(err: oc_errors.OmegaConfBaseException) -> str | None:
    """The value as written (an interpolation unresolved) of the key an error is about."""
    parent, key = getattr(err, "parent_node", None), getattr(err, "key", None)
    if parent is None or key is None:
        return None
    try:
        return show(parent._get_node(key)._value())
    except (AttributeError, KeyError, oc_errors.OmegaConfBaseException):
        return None
