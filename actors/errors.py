"""Errors of the orchestrator application: one base, typed subclasses."""

from __future__ import annotations


class SagaError(Exception):
    """Base of every error raised by the ``actors`` package."""


class ConfigError(SagaError):
    """A configuration value is missing or wrong. The message names the key."""


class DefinitionError(SagaError):
    """A saga definition is inconsistent. The message names the saga and step."""


class PayloadError(SagaError):
    """A payload template names a field the saga input or a reply lacks."""


class UnknownSagaTypeError(SagaError):
    """A start request names a saga type this orchestrator does not run."""


class InvalidRequestError(SagaError):
    """A start request is malformed. The message says which field and why."""


class RestoreError(SagaError):
    """The saga log or a snapshot could not be read back into state."""
