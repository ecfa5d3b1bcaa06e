"""The config schema: what each key means, its type and its range, declared once per key.

Each config group's YAML names its schema, a dataclass, first in its defaults list
(``- /schema/pretext/task/mlm@task``): Hydra merges the YAML onto it, so a value of the wrong type
(``pretext.lr=abc``) fails while the config is composed. A field's range and its one-line
documentation sit in the field itself (``setting("...", gt=0, lt=1)``);
``config_check.check_config`` checks every range before any data is read or any model built. A
choice whose YAML names no schema (a user's own config) is still checked: each key it sets that its
group's base schemas declare.

The schema modules import neither torch nor Lightning: composing a config (``--cfg job``,
``--help``, a refused command line) stays fast.
"""

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf import errors as oc_errors

PREFIX = "schema"  # ConfigStore: schema/<group>/<name>, named by YAMLs as /schema/<group>/<name>
BASES: dict[str, list[type]] = {}  # config path ("" is the root) -> schemas its keys fall back to
CLASSES: dict[str, type] = {}  # every schema (nested ones too) by class name
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
    same_as: str | None = None,
    empty: bool = False,
    accepts: str | None = None,
    check: Callable[[Any], bool] | None = None,
) -> Any:
    """A schema field: its documentation and its range, the one place both are declared.

    ``ge``/``gt``/``le``/``lt`` bound numbers (a bound may name another key, ``le="data.size"``);
    on a list they bound each item. ``choices``: the values allowed. ``divides``: a key whose value
    this one must divide (``backbone.heads`` divides ``backbone.width``); ``same_as``: a key it
    must equal (``backbone.in_channels``, by default ``${data.channels}``). Strings and lists may
    not be empty unless ``empty``; numbers must be finite. A field of type ``Any`` describes
    itself with ``accepts`` and is checked by ``check``. The value itself comes from the YAML
    (``default`` only for a key that no YAML sets).
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    meta.update(divides=divides, same_as=same_as, empty=empty, accepts=accepts, check=check)
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
    in its defaults list. ``base_for``: the config path (``"pretext"``) whose keys it checks when
    that node's YAML names no schema (a user's own choice): each key such a node sets is checked
    by the first of the path's base schemas that declares it."""

    def register(cls: type) -> type:
        group, _, option = f"{PREFIX}/{name}".rpartition("/")
        node = OmegaConf.structured(cls)
        # Open while configs merge (a preset's key for another choice can still be removed with
        # ~key); check_config refuses any key the schema does not declare.
        OmegaConf.set_struct(node, False)
        ConfigStore.instance().store(group=group, name=option, node=node)
        _remember(cls)
        if base_for is not None:
            BASES.setdefault(base_for, []).append(cls)
        return cls

    return register


def _remember(cls: type) -> None:
    CLASSES[cls.__name__] = cls
    for spec in dataclasses.fields(cls):
        inner = _unwrap(spec.type)[0]
        if dataclasses.is_dataclass(inner):
            _remember(inner)


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
    bool: ("true or false", "true/false values"),
}


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


def show(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, list):
        return "[" + ",".join(map(show, value)) + "]"
    return str(value)


def _lookup(cfg: DictConfig | None, key: str) -> Any:
    """The value of another key, for a message (None where it cannot be had)."""
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
        text = "one of: " + ", ".join(map(show, meta["choices"]))
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
                f"{sign} {bound}" + (f" ({show(current)})" if current is not None else "")
            )
        if limits:
            text += " " + " and ".join(limits)
        for name, words in (("divides", "that divides"), ("same_as", "equal to")):
            if name in meta:
                current = _lookup(cfg, meta[name])
                text += f" {words} {meta[name]}"
                text += f" ({show(current)})" if current is not None else ""
        if item is not None and not meta.get("empty"):
            text = "a non-empty " + text.removeprefix("a ")
    return text + (" or null" if optional else "")


# Whether a value lies in its range --------------------------------------------------------------


def _bound(cfg: DictConfig, bound: float | str) -> Any:
    return OmegaConf.select(cfg, bound) if isinstance(bound, str) else bound


FLOAT32_MAX = 3.4028234663852886e38  # numbers end up in float32 (or narrower) tensors


def finite(value: float) -> bool:
    """Finite, and within float32: an lr of 1e300 overflows the first optimiser step."""
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _scalar_ok(value: Any, meta: dict[str, Any], cfg: DictConfig) -> bool:
    if "choices" in meta:
        return value in meta["choices"]
    if isinstance(value, str):
        return bool(value) or bool(meta.get("empty"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not finite(value):
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
    return "same_as" not in meta or value == _bound(cfg, meta["same_as"])


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


def schema_nodes(cfg: DictConfig) -> Iterator[tuple[str, DictConfig, list[type], bool]]:
    """Each node of ``cfg`` that a schema declares: its path, the node, its schemas, and whether
    the schema is the node's own (named in its YAML) or its group's bases (it names none)."""
    for path, node in _nodes(cfg):
        kind = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(kind):
            yield path, node, [kind], True
        elif path in BASES:
            yield path, node, BASES[path], False


def declared(node: DictConfig, kinds: list[type]) -> dict[str, dataclasses.Field]:
    """The keys of ``node`` that ``kinds`` declare, each with its first declaration."""
    specs: dict[str, dataclasses.Field] = {}
    for kind in kinds:
        for spec in dataclasses.fields(kind):
            if spec.name in node.keys():  # (``in`` says no for a mandatory ??? value)
                specs.setdefault(spec.name, spec)
    return specs


def schema_fields(cfg: DictConfig) -> Iterator[tuple[str, dataclasses.Field]]:
    """Each key of ``cfg`` that a schema declares, with its field: its type, range and doc."""
    for path, node, kinds, _ in schema_nodes(cfg):
        for name, spec in declared(node, kinds).items():
            yield (f"{path}.{name}" if path else name), spec
