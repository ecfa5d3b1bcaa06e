"""The config schema: what each key means, its type and its range, declared once per key.

Each config group's YAML names its schema, a dataclass, in its defaults list
(``- /schema/pretext/task/mlm@task``): Hydra merges the YAML onto it, so a value of the wrong type
(``pretext.lr=abc``) fails while the config is composed. A field's range and its one-line
documentation sit in the field itself (``setting("...", gt=0, lt=1)``), and ``check_config``
checks every range before any data is read or any model built. A choice whose YAML names no schema
(a user's own config) is still checked against its group's base schema, for the keys every choice
of the group shares. Every failure is one line, ``<key>=<value>: <what it accepts>``.

The schema modules import neither torch nor Lightning: composing a config (``--cfg job``,
``--help``, a refused command line) stays fast.
"""

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf import errors as oc_errors

from ssl_lab.errors import SslLabError

PREFIX = "schema"  # ConfigStore: schema/<group>/<name>, named by YAMLs as /schema/<group>/<name>
_BASES: dict[str, type] = {}  # config path ("" is the root) -> the schema its keys fall back to
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def setting(
    help: str,
    *,
    default: Any = MISSING,
    ge: float | str | None = None,
    gt: float | str | None = None,
    le: float | str | None = None,
    lt: float | str | None = None,
    choices: tuple[Any, ...] | None = None,
    divides: str | None = None,
    empty: bool = False,
    accepts: str | None = None,
    check: Callable[[Any], bool] | None = None,
) -> Any:
    """A schema field: its documentation and its range, the one place both are declared.

    ``ge``/``gt``/``le``/``lt`` bound numbers (a bound may name another key, ``le="data.size"``);
    on a list they bound each item. ``choices``: the values allowed. ``divides``: a key whose value
    this one must divide (``backbone.heads`` divides ``backbone.width``). Strings and lists may
    not be empty unless ``empty``; numbers must be finite. A field of type ``Any`` describes
    itself with ``accepts`` and is checked by ``check``. The value itself comes from the YAML
    (``default`` only for a key that no YAML sets).
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    meta.update(divides=divides, empty=empty, accepts=accepts, check=check)
    meta = {k: v for k, v in meta.items() if v is not None}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_object(value: Any) -> bool:
    """A node that Hydra builds: ``{_target_: ..., ...}``."""
    return isinstance(value, DictConfig) and isinstance(value.get("_target_"), str)


def is_partial(value: Any) -> bool:
    """A node that Hydra builds as a partial (an optimizer, a scheduler): ``_partial_: true``."""
    return is_object(value) and value.get("_partial_") is True


def partial_setting(help: str, *, optional: bool = False) -> Any:
    """A field holding a partial (``{_target_: torch.optim.AdamW, _partial_: true, ...}``), or
    null where ``optional``."""
    accepts = "a node with _target_ and _partial_: true" + (", or null" if optional else "")
    return setting(help, accepts=accepts, check=lambda v: (optional and v is None) or is_partial(v))


def schema(name: str, *, base_for: str | None = None) -> Callable[[type], type]:
    """Register a dataclass in Hydra's ConfigStore as ``schema/<name>``, the schema a YAML names
    in its defaults list. ``base_for``: the config path (``"pretext.task"``) whose keys fall back
    to it when that node's YAML names no schema."""

    def register(cls: type) -> type:
        group, _, option = f"{PREFIX}/{name}".rpartition("/")
        node = OmegaConf.structured(cls)
        # Open while configs merge (a preset's key for another choice can still be removed with
        # ~key); check_config refuses any key the schema does not declare.
        OmegaConf.set_struct(node, False)
        ConfigStore.instance().store(group=group, name=option, node=node)
        _CLASSES[cls.__name__] = cls
        if base_for is not None:
            _BASES[base_for] = cls
        return cls

    return register


def register_schemas() -> None:
    """Every group's schemas into the ConfigStore (each module registers its own on import)."""
    import ssl_lab.backbones.schema  # noqa: F401
    import ssl_lab.data.schema  # noqa: F401
    import ssl_lab.downstream.schema  # noqa: F401
    import ssl_lab.pretext.schema  # noqa: F401
    import ssl_lab.run_schema  # noqa: F401


# What a value must be, in words -----------------------------------------------------------------

_NOUNS = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}
_NOUNS[bool] = ("true or false", "true/false values")


def _unwrap(kind: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False


def _item_type(kind: Any) -> Any | None:
    """The item type of ``list[X]``, or None for a type that is no list."""
    if typing.get_origin(kind) in (list, typing.List):  # noqa: UP006
        return typing.get_args(kind)[0]
    return None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, list):
        return "[" + ",".join(map(_show, value)) + "]"
    return str(value)


def _lookup(cfg: DictConfig | None, key: str) -> Any:
    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except oc_errors.OmegaConfBaseException:
        return None


def describe(spec: dataclasses.Field, cfg: DictConfig | None = None) -> str:
    """What ``spec`` accepts, in words: ``an integer >= 2 and <= data.size (32)``. ``cfg`` fills
    in the values of the keys that a bound names."""
    meta, (kind, optional) = spec.metadata, _unwrap(spec.type)
    if "accepts" in meta:
        text = meta["accepts"]
    elif "choices" in meta:
        text = "one of: " + ", ".join(map(_show, meta["choices"]))
    else:
        item = _item_type(kind)
        noun = _NOUNS.get(item if item is not None else kind, ("any value", "values"))
        text = f"a list of {noun[1]}" if item is not None else noun[0]
        if (item or kind) is str and not meta.get("empty"):
            text = text.replace("a string", "a non-empty string")
        limits = []
        for name, sign in _BOUNDS.items():
            bound = meta.get(name)
            if bound is None:
                continue
            current = _lookup(cfg, bound) if isinstance(bound, str) else None
            limits.append(
                f"{sign} {bound}" + (f" ({_show(current)})" if current is not None else "")
            )
        if "divides" in meta:
            current = _lookup(cfg, meta["divides"])
            limits.append(
                f"that divides {meta['divides']}"
                + (f" ({_show(current)})" if current is not None else "")
            )
        if limits:
            text += " " + " and ".join(limits)
        if item is not None and not meta.get("empty"):
            text = "a non-empty " + text.removeprefix("a ")
    return text + (" or null" if optional else "")


# The check -------------------------------------------------------------------------------------


def _bound(cfg: DictConfig, bound: float | str) -> Any:
    return OmegaConf.select(cfg, bound) if isinstance(bound, str) else bound


def _scalar_ok(value: Any, meta: dict[str, Any], cfg: DictConfig) -> bool:
    if "choices" in meta:
        return value in meta["choices"]
    if isinstance(value, str):
        return bool(value) or bool(meta.get("empty"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False
    for name, ok in (
        ("ge", lambda b: value >= b),
        ("gt", lambda b: value > b),
        ("le", lambda b: value <= b),
        ("lt", lambda b: value < b),
    ):
        if name in meta:
            bound = _bound(cfg, meta[name])
            if isinstance(bound, (int, float)) and not ok(bound):
                return False
    if "divides" in meta:
        whole = _bound(cfg, meta["divides"])
        if isinstance(whole, int) and (value <= 0 or whole % value):
            return False
    return True


def value_ok(spec: dataclasses.Field, value: Any, cfg: DictConfig) -> bool:
    """Whether ``value`` (already of the field's type) lies in the range ``spec`` declares."""
    meta = spec.metadata
    if "check" in meta:
        return bool(meta["check"](value))
    if value is None:
        kind, optional = _unwrap(spec.type)
        return optional or kind is Any
    if isinstance(value, (list, ListConfig)):
        items = list(value)
        return (bool(items) or bool(meta.get("empty"))) and all(
            _scalar_ok(item, meta, cfg) for item in items
        )
    return _scalar_ok(value, meta, cfg)


def _nodes(node: DictConfig, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every dict node of the config with its dotted path, Hydra's own aside."""
    yield path, node
    for key in node.keys():
        if path == "" and key == "hydra":
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            if child._is_interpolation():
                continue
            yield from _nodes(child, f"{path}.{key}" if path else str(key))


def _typed(node: DictConfig, base: type, path: str) -> dict[str, Any]:
    """The keys of ``node`` that ``base`` declares, converted to its types: a choice without a
    schema of its own still gets its group's."""
    shared = {f.name: node[f.name] for f in dataclasses.fields(base) if f.name in node.keys()}
    try:
        typed = OmegaConf.merge(OmegaConf.structured(base), shared)
    except oc_errors.ValidationError as err:
        spec = _field_of(err)
        key = f"{path}.{err.key}" if path else str(err.key)
        raise SslLabError(f"{key}={_show(shared.get(str(err.key)))}: {describe(spec)}") from None
    return {name: typed[name] for name in shared}


def check_config(cfg: DictConfig) -> None:
    """Check every key that a schema declares against its range, before any work: the first bad
    one is raised as one line, ``<key>=<value>: <what it accepts>``."""
    try:
        for path, node in _nodes(cfg):
            kind = OmegaConf.get_type(node)
            if dataclasses.is_dataclass(kind):
                _check_declared(path, node, kind)
                _check_values(cfg, path, node, kind)
                problem = kind.check(node) if hasattr(kind, "check") else None
                if problem:
                    raise SslLabError(f"{path}.{problem}" if path else problem)
            elif path in _BASES:
                _check_values(cfg, path, _typed(node, _BASES[path], path), _BASES[path])
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
            shown = _show(node._get_node(key)._value())
            raise SslLabError(f"{full}={shown}: {path or 'the config'} has no key {key} ({hint})")


def _check_values(cfg: DictConfig, path: str, values: Mapping[str, Any], kind: type) -> None:
    for spec in dataclasses.fields(kind):
        if spec.name not in values.keys():  # (``in`` says no for a mandatory ??? value)
            continue
        value = values[spec.name]
        if not value_ok(spec, value, cfg):
            key = f"{path}.{spec.name}" if path else spec.name
            raise SslLabError(f"{key}={_show(value)}: {describe(spec, cfg)}")


# Errors of composition, in one line ------------------------------------------------------------

_CLASSES: dict[str, type] = {}  # schema class name -> class, to read Hydra's messages back


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


def _given(err: BaseException) -> str:
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
    if key and kind and kind[1] in _CLASSES:
        name = key[1].rpartition(".")[2].split("[")[0]
        spec = {f.name: f for f in dataclasses.fields(_CLASSES[kind[1]])}.get(name)
    if spec is None:
        return None
    source = f" (in {where[1]})" if where else ""
    return SslLabError(f"{key[1]}={_given(text)}: {describe(spec)}{source}")


def config_error(err: BaseException) -> SslLabError | None:
    """A config mistake that Hydra or OmegaConf found (a value of the wrong type, an unknown key,
    a mandatory value left unset, an override that does not parse) as one line naming the key;
    None for anything else (a bug keeps its traceback)."""
    from hydra.errors import HydraException

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
        if isinstance(e, oc_errors.MissingMandatoryValue):
            return SslLabError(f"{e.full_key}=???: mandatory: set it ({e.full_key}=...)")
        found = _from_message(str(e))
        if found is not None:
            return found
    known = next(
        e for e in chain if isinstance(e, (oc_errors.OmegaConfBaseException, HydraException))
    )
    key = getattr(known, "full_key", None)
    if key and (raw := _raw(known)) is not None:
        key = f"{key}={raw}"
    key = key or getattr(known, "override", None)
    return SslLabError((f"{key}: " if key else "") + _first_line(known))


def _raw(err: oc_errors.OmegaConfBaseException) -> str | None:
    """The value as written (an interpolation unresolved) of the key an error is about."""
    parent, key = getattr(err, "parent_node", None), getattr(err, "key", None)
    if parent is None or key is None:
        return None
    try:
        return _show(parent._get_node(key)._value())
    except (AttributeError, KeyError, oc_errors.OmegaConfBaseException):
        return None
