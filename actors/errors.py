"""Errors of the orchestrator application: one base, typed subclasses."""

from __future__ import annotations


class SagaError(Exception):
    """Base of every error raised by the ``actors`` package."""


class ConfigError(SagaError):
    """A configuration value is missing or wrong. The message names the key."""


class UsageError(SagaError):
    """A command line that cannot be acted on. The message says what to pass
    instead."""


class DefinitionError(SagaError):
    """A saga definition is inconsistent. The message names the saga and step."""


class PayloadError(SagaError):
    """A payload template names a field the saga input or a reply lacks."""


class UnknownSagaTypeError(SagaError):
    """A start request names a saga type this orchestrator does not run."""


class InvalidRequestError(SagaError):
    """A start request is malformed. The message says which field and why."""


class HostUnavailableError(SagaError):
    """A host could not make a batch durable; nothing of it was applied."""


class RayUnreachableError(SagaError):
    """No Ray cluster answered at the configured address; nothing was started."""


class EngineStartError(SagaError):
    """The engine's actors did not come up in time; nothing was left running."""


class RestoreError(SagaError):
    """The saga log or a snapshot could not be read back into state."""


class SnapshotError(SagaError):
    """A snapshot could not be written where a restore finds it. Nothing is
    lost: the log alone restores everything, and a later snapshot is tried."""


class StartError(SagaError):
    """Some start requests were not acknowledged by the broker. ``failed`` maps
    each such sagaId to why; ``started`` lists the acknowledged ones. Sending a
    failed one again is safe: a start that did land is a duplicate."""

    def __init__(self, started: list[str], failed: dict[str, str]) -> None:
        first = next(iter(failed.items()))
        super().__init__(
            f"{len(failed)} of {len(started) + len(failed)} start request(s) were "
            f"not acknowledged (first: saga {first[0]}: {first[1]}); send those "
            "again with the same sagaIds"
        )
        self.started = started
        self.failed = failed


class PolicyError(SagaError):
    """A backtest's policy file names what the definitions lack, or breaks
    their rules. The message names the saga type, the step and the field."""


class BacktestError(SagaError):
    """A backtest cannot run on what was recorded (no sagas in the window, a
    recording without a saga's start). The message says what to pass instead."""
