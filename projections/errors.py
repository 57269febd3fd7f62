"""Errors of the ``projections`` package: one base, typed subclasses."""

from __future__ import annotations


class ProjectionError(Exception):
    """Base of every error raised by the ``projections`` package."""


class StoreLockedError(ProjectionError):
    """Another process holds the DuckDB file open for writing."""
