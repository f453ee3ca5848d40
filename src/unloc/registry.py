"""One small registry for every family of variants, and typed settings for each variant.

A family (stages, objectives, regularizers, localizers, optimizers, curve metrics, tables,
figures) is one ``Registry``; a variant registers itself where it is defined, with a decorator
that builds its frozen spec::

    @OBJECTIVES.register("npo", settings=NpoSettings, needs=("forget",))
    def npo(ctx, settings): ...

The spec is the single source of truth: the library looks the variant up by name, the CLI
builds its options from it and the workflow builds wildcard constraints, ``expand()`` lists
and config checks from it. A duplicate name is an error; an unknown name lists the valid
ones and suggests the closest.

A variant's settings are a frozen dataclass whose fields carry a default and a help string
(``setting``). ``parse_settings`` turns a config block (a mapping from YAML or JSON) into that
dataclass, refusing unknown keys, wrong types and missing required values with the key's
full path, e.g. ``unlearn.npo.betta: unknown setting; did you mean 'beta'?``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Generic, Literal, TypeVar


class ConfigError(ValueError):
    """A config block or a stage's params do not fit their spec; the message names the key."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no entry of a registry has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when none is close."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- settings


def setting(default: Any = MISSING, help: str = "", **check) -> Any:
    """A settings field with its default (none: the value is required) and help string.

    ``check`` takes ``minimum``, ``exclusive_minimum`` or ``maximum`` for numbers, or
    ``registry`` (and ``common``) for a field that names a variant of another family: its value
    is ``"name"`` or ``{name: ..., <settings>}`` and parses to a ``Choice`` (``Registry.choose``).
    """
    metadata = {"help": help, **check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings are frozen: give a tuple, not a list/dict/set, as a default")
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class NoSettings:
    """A variant without settings of its own."""


def parse_settings(cls, value: Mapping | None, path: str):
    """``value`` as an instance of the settings dataclass ``cls``; ``path`` names the block in errors."""
    if value is None:
        value = {}
    if is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings, got {_kind(value)} {value!r}")
    known = {f.name: f for f in fields(cls) if f.init}
    for key in value:
        if key not in known:
            allowed = ", ".join(known) or "none"
            raise ConfigError(f"{_join(path, key)}: unknown setting{suggest(key, known)} (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in known.items():
        where = _join(path, name)
        registry = f.metadata.get("registry")
        if name not in value and f.default is MISSING and f.default_factory is MISSING:
            help_text = f" ({f.metadata['help']})" if f.metadata.get("help") else ""
            raise ConfigError(f"{where}: required setting missing{help_text}")
        if registry is not None:
            raw = value.get(name, f.default)
            kwargs[name] = None if raw is None else registry.choose(raw, where, f.metadata.get("common"))
        elif name in value:
            kwargs[name] = _convert(value[name], hints[name], where)
            _check_bounds(kwargs[name], f.metadata, where)
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a check in __post_init__ that names its field
        raise ConfigError(_join(path, str(e))) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from e


def to_dict(settings) -> dict:
    """Settings as plain JSON-able data (tuples become lists), e.g. for a rule's params."""

    def plain(x):
        if isinstance(x, Choice):
            return x.to_dict()
        if is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(settings)


def describe(cls) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every field, for --help texts and docs."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        default = "required" if f.default is MISSING else f.default
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


# type -> (accepts a value?, what was expected, normalise); a bool is never a number here
_SCALARS = {
    bool: (lambda v: isinstance(v, bool), "true or false", lambda v: v),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", lambda v: v),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float),
    str: (lambda v: isinstance(v, str), "a string", lambda v: v),
}


def _convert(value, tp, path: str):
    """``value`` checked (and normalised: ints to floats, lists to tuples) against the type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if is_dataclass(tp):
        return parse_settings(tp, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            names = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{path}: {value!r} is not one of {names}{suggest(value, map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}: {value!r} is not {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_kind(value)} {value!r}")
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return tuple(_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_kind(value)} {value!r}")
        return dict(value)
    if tp in _SCALARS:
        accepts, expected, cast = _SCALARS[tp]
        if not accepts(value):
            raise ConfigError(f"{path}: expected {expected}, got {_kind(value)} {value!r}")
        return cast(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: cannot read {value!r} as {_type_name(tp)}")


def _check_bounds(value, metadata: Mapping, path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if "minimum" in metadata and value < metadata["minimum"]:
        raise ConfigError(f"{path}: {value} is less than the minimum of {metadata['minimum']}")
    if "exclusive_minimum" in metadata and value <= metadata["exclusive_minimum"]:
        raise ConfigError(f"{path}: {value} must be greater than {metadata['exclusive_minimum']}")
    if "maximum" in metadata and value > metadata["maximum"]:
        raise ConfigError(f"{path}: {value} is greater than the maximum of {metadata['maximum']}")


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What every registry entry holds; a family adds its own fields in a subclass.

    ``needs`` names what the variant reads: sub-batches for a loss (forget, retain, idk),
    input artifacts for a localizer, curve columns for a table.
    """

    name: str
    fn: Callable
    settings: type = NoSettings
    needs: tuple[str, ...] = ()
    help: str = ""

    def parse(self, value: Mapping | None, path: str):
        """This variant's settings from its config block."""
        return parse_settings(self.settings, value, path)


S = TypeVar("S", bound=Spec)


class Registry(Generic[S]):
    """Named specs of one family, in registration order."""

    def __init__(self, family: str, spec_type: type[S] = Spec):
        self.family, self.spec_type = family, spec_type
        self._specs: dict[str, S] = {}

    def register(self, name: str, **spec_fields) -> Callable[[Callable], Callable]:
        """Decorator: register the decorated function under ``name``; returns it unchanged."""

        def decorate(fn: Callable) -> Callable:
            doc = (fn.__doc__ or "").strip().split("\n\n")[0]
            spec_fields.setdefault("help", " ".join(doc.split()))
            self.add(self.spec_type(name=name, fn=fn, **spec_fields))
            return fn

        return decorate

    def add(self, spec: S) -> S:
        if spec.name in self._specs:
            raise ValueError(f"{self.family} {spec.name!r} is registered twice")
        if not is_dataclass(spec.settings):
            raise TypeError(f"{self.family} {spec.name!r}: settings must be a dataclass")
        self._specs[spec.name] = spec
        return spec

    def __getitem__(self, name: str) -> S:
        return self.get(name)

    def get(self, name: str, path: str = "") -> S:
        """The spec named ``name``; ``path`` (a config key) prefixes the error when there is none."""
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            where = f"{path}: " if path else ""
            raise UnknownNameError(
                f"{where}unknown {self.family} {name!r}{suggest(name, self._specs)} "
                f"(allowed: {', '.join(self._specs)})") from None

    def __contains__(self, name) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[S]:
        return list(self._specs.values())

    def pattern(self, where: Callable[[S], bool] | None = None) -> str:
        """A regular expression matching exactly the registered names (for wildcard constraints),
        or those whose spec satisfies ``where``."""
        names = [name for name, spec in self._specs.items() if where is None or where(spec)]
        return "|".join(sorted(names, key=len, reverse=True))

    def choose(self, value, path: str, common: Mapping[str, Any] | None = None):
        """A variant chosen in a config: ``"name"`` or ``{name: ..., <settings>}``.

        ``common`` maps keys every choice of this family takes (say ``weight``) to their
        defaults; they are split off before the variant's own settings are parsed.
        Returns ``Choice(spec, settings, common values)``.
        """
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping) or "name" not in value:
            raise ConfigError(f"{path}: expected a {self.family} name or a mapping with 'name', got {value!r}")
        spec = self.get(value["name"], f"{path}.name")
        common = dict(common or {})
        shared = {k: value.get(k, d) for k, d in common.items()}
        own = {k: v for k, v in value.items() if k != "name" and k not in common}
        return Choice(spec, spec.parse(own, path), shared)


@dataclass(frozen=True)
class Choice:
    """A registry entry picked by a config, with its parsed settings."""

    spec: Spec
    settings: Any
    common: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict:
        return {"name": self.spec.name, **to_dict(self.common), **to_dict(self.settings)}
