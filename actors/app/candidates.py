"""Saga definitions to check before they are deployed, loaded from where the
operator keeps them: a Python module (``package.module``) or file (``x.py``)
that defines ``DEFINITIONS`` (a mapping of name to
:class:`~actors.core.SagaDefinition`, as :mod:`actors.core.catalog` does), or a
JSON file holding a list of definitions."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

import msgspec

from actors.core import SagaDefinition
from actors.errors import DefinitionError, UsageError


def load_definitions(spec: str) -> dict[str, SagaDefinition]:
    """The definitions at ``spec``, by name; a clear error for anything else."""
    if spec.endswith(".json"):
        return _from_json(Path(spec))
    try:
        module = _module(spec)
    except DefinitionError as exc:  # a definition that does not hold together
        raise UsageError(f"--definitions {spec}: {exc}") from None
    found = getattr(module, "DEFINITIONS", None)
    if not isinstance(found, Mapping) or not all(
        isinstance(d, SagaDefinition) for d in found.values()
    ):
        raise UsageError(
            f"--definitions {spec} must define DEFINITIONS, a mapping of saga "
            "type name to SagaDefinition (as actors/core/catalog.py does)"
        )
    return _by_name(spec, found.values())


def _module(spec: str) -> ModuleType:
    if not spec.endswith(".py"):
        try:
            return importlib.import_module(spec)
        except ImportError as exc:
            raise UsageError(
                f"--definitions {spec}: cannot import it ({exc}); give a module "
                "name on the Python path, a .py file or a .json file"
            ) from None
    if not Path(spec).is_file():
        raise UsageError(f"--definitions {spec}: no such file")
    loaded = importlib.util.spec_from_file_location("saga_candidates", spec)
    if loaded is None or loaded.loader is None:
        raise UsageError(f"--definitions {spec}: not a Python file to import")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def _from_json(path: Path) -> dict[str, SagaDefinition]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--definitions {path}: {exc.strerror}") from None
    try:
        found = msgspec.json.decode(raw, type=list[SagaDefinition])
    except (msgspec.DecodeError, DefinitionError) as exc:
        raise UsageError(
            f"--definitions {path}: not a list of saga definitions: {exc}"
        ) from None
    return _by_name(str(path), found)


def _by_name(spec: str, found: Iterable[SagaDefinition]) -> dict[str, SagaDefinition]:
    by_name: dict[str, SagaDefinition] = {}
    for definition in found:
        if definition.name in by_name:
            raise UsageError(f"--definitions {spec}: saga {definition.name!r} twice")
        by_name[definition.name] = definition
    if not by_name:
        raise UsageError(f"--definitions {spec} holds no saga definitions")
    return by_name
