"""A saga policy to try: changes to step timeouts, retry limits and backoff, and
compensation rules, over the deployed definitions.

A policy file (TOML or JSON) names saga types and their steps, and gives only
what changes::

    [deposit.steps.deposit]
    timeout_ms = 60000                # the forward command's reply timeout
    retry = { max_attempts = 5 }      # its retry policy, field by field

    [deposit.steps.process_payment.compensation]
    timeout_ms = 20000                # the refund's timeout and retries

    [deposit.steps.verify_user]
    compensate = false                # the rule: no compensation, so the
                                      # step is retried until it is answered

Every version of the saga type gets the change (a saga runs to its end on the
version it started with). The changed definition is checked as any definition
is, so a policy that breaks a rule (a step after the pivot) is refused with
the definition's own error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from actors.core import Action, RetryPolicy, SagaDefinition, Step
from actors.errors import DefinitionError, PolicyError
from events.errors import MessageDecodeError
from events.wire.messages import decode_json

Positive = Annotated[int, msgspec.Meta(gt=0)]


#: Any JSON value (converted to the policy's shape after).
_JSON_VALUE: msgspec.json.Decoder[object] = msgspec.json.Decoder()


class RetryChange(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Fields of a :class:`~actors.core.RetryPolicy` to change (unset: kept)."""

    max_attempts: Positive | None = None
    initial_backoff_ms: Positive | None = None
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] | None = None
    max_backoff_ms: Positive | None = None
    jitter: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None

    def applied(self, retry: RetryPolicy) -> RetryPolicy:
        changes = {
            k: v for k, v in msgspec.structs.asdict(self).items() if v is not None
        }
        return msgspec.structs.replace(retry, **changes)


class ActionChange(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A command's reply timeout and retries, changed."""

    timeout_ms: Positive | None = None
    retry: RetryChange | None = None

    def applied(self, action: Action) -> Action:
        changed = action
        if self.timeout_ms is not None:
            changed = msgspec.structs.replace(changed, timeout_ms=self.timeout_ms)
        if self.retry is not None:
            changed = msgspec.structs.replace(
                changed, retry=self.retry.applied(changed.retry)
            )
        return changed


class StepChange(
    ActionChange, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A step's forward command (``timeout_ms``, ``retry``), its compensation's,
    and whether it keeps its compensation (``compensate = false`` drops it:
    the step is then retried until answered, never undone)."""

    compensation: ActionChange | None = None
    compensate: bool | None = None


class SagaChange(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    steps: dict[str, StepChange] = {}


class Policy(msgspec.Struct, frozen=True):
    """Changes per saga type. The empty policy changes nothing: the deployed
    definitions, as recorded."""

    sagas: dict[str, SagaChange] = {}

    @classmethod
    def parse(cls, text: bytes, name: str) -> Policy:
        """A policy from a file's bytes; ``name`` (the file's) says its format
        by its suffix (``.toml`` or ``.json``) and names it in errors."""
        try:
            if name.endswith(".toml"):
                raw: Any = tomllib.loads(text.decode())
            elif name.endswith(".json"):
                raw = decode_json(_JSON_VALUE, text)
            else:
                raise PolicyError(
                    f"policy {name}: say its format by its name (.toml or .json)"
                )
            sagas = msgspec.convert(raw, dict[str, SagaChange])
        except (
            ValueError,
            UnicodeDecodeError,
            msgspec.ValidationError,
            MessageDecodeError,
        ) as exc:
            raise PolicyError(f"policy {name} is not a valid policy: {exc}") from exc
        except RecursionError:  # tomllib recurses into nested arrays and tables
            raise PolicyError(
                f"policy {name} is not a valid policy: nested too deeply to read"
            ) from None
        return cls(sagas)

    def applied(
        self, definitions: Mapping[str, SagaDefinition]
    ) -> dict[str, SagaDefinition]:
        """``definitions`` with the changes made (each checked again)."""
        changed = dict(definitions)
        for saga_type, change in self.sagas.items():
            definition = definitions.get(saga_type)
            if definition is None:
                raise PolicyError(
                    f"policy names saga type {saga_type!r}; the definitions are "
                    f"{', '.join(sorted(definitions))}"
                )
            unknown = sorted(
                n for n in change.steps if not _has_step_anywhere(definition, n)
            )
            if unknown:
                raise PolicyError(
                    f"policy names step(s) {', '.join(unknown)} of saga "
                    f"{saga_type!r}, which has "
                    f"{', '.join(s.name for s in definition.steps)}"
                )
            try:
                older = tuple(_changed(d, change) for d in definition.previous)
                changed[saga_type] = msgspec.structs.replace(
                    _changed(definition, change), previous=older
                )
            except DefinitionError as exc:
                raise PolicyError(f"policy for saga {saga_type!r}: {exc}") from exc
        return changed

    def describe(self) -> dict[str, Any]:
        """The changes as plain data (what ``--json`` reports)."""
        return {
            saga_type: msgspec.to_builtins(change)
            for saga_type, change in self.sagas.items()
        }


def _has_step_anywhere(definition: SagaDefinition, name: str) -> bool:
    return any(d.has_step(name) for d in (definition, *definition.previous))


def _changed(definition: SagaDefinition, change: SagaChange) -> SagaDefinition:
    steps = tuple(
        _step(step, change.steps[step.name]) if step.name in change.steps else step
        for step in definition.steps
    )
    # Rebuilt, not replaced: the definition's checks run on the new steps.
    return SagaDefinition(
        name=definition.name,
        steps=steps,
        inputs=definition.inputs,
        input_types=definition.input_types,
        version=definition.version,
    )


def _step(step: Step, change: StepChange) -> Step:
    compensation = step.compensation
    if change.compensate is False:
        compensation = None
    elif change.compensate is True and compensation is None:
        raise PolicyError(
            f"step {step.name!r} has no compensation to keep: a policy can drop "
            "a compensation or tune it, not write one"
        )
    if change.compensation is not None:
        if compensation is None:
            raise PolicyError(
                f"step {step.name!r} has no compensation to change (or the policy "
                "drops it with compensate = false)"
            )
        compensation = change.compensation.applied(compensation)
    return Step(
        name=step.name, action=change.applied(step.action), compensation=compensation
    )
