"""Errors of the orchestrator application: one base, typed subclasses."""

from __future__ import annotations


class SagaError(Exception):
    """Base of every error raised by the ``actors`` package."""


class ConfigError(SagaError):
    """A configuration value is missing or wrong. The message names the key."""
