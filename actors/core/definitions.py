"""Saga definitions: a saga type is a named, ordered list of steps, as data.

A step names the command topic it sends to and the reply topic it listens on,
an optional compensation, a reply timeout and a retry policy. Payloads are
templates: a string ``"$input.amount"`` is replaced by the saga input's
``amount``, ``"$steps.process_payment.paymentId"`` by that field of an earlier
step's reply, and ``"$saga.id"`` by the sagaId; any other value is literal (a
string that must start with ``$`` is written ``$$...``). Templates are checked
when the definition is built, so a typo fails at start-up, not in the middle of
a saga.

Pure: no I/O, no clock, no randomness. Jitter arrives as a number from outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from actors.errors import DefinitionError, PayloadError
from events.wire.backoff import Backoff
from events.wire.topics import Direction, parse_topic

Positive = Annotated[int, msgspec.Meta(gt=0)]

#: What a compensation's stepId adds to its step's name (``deposit.compensate``).
COMPENSATE: Final = ".compensate"


class RetryPolicy(Backoff, frozen=True, forbid_unknown_fields=True):
    """A step's retries: up to ``max_attempts`` sends in all, waits of at
    least a millisecond (the shared shape, with the steps' bounds)."""

    max_attempts: Positive = 3
    initial_backoff_ms: Positive = 500
    max_backoff_ms: Positive = 30_000

    def backoff_ms(self, attempt: int, jitter: float) -> int:
        """The wait before attempt ``attempt + 1``; ``jitter`` is in [0, 1)."""
        return max(1, round(self.wait_ms(attempt, jitter)))


class Action(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A command sent to a participant and the topic its answer comes back on."""

    command_topic: str
    payload: dict[str, Any] = {}
    #: Defaults to the command topic's events twin (``x.commands.y`` -> ``x.events.y``).
    reply_topic: str = ""
    timeout_ms: Positive = 10_000
    retry: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        topic = parse_topic(self.command_topic)
        if topic.direction is not Direction.COMMANDS:
            raise DefinitionError(
                f"command_topic {self.command_topic!r} is not a commands topic"
            )
        if not self.reply_topic:
            msgspec.structs.force_setattr(self, "reply_topic", topic.reply.name)
        elif parse_topic(self.reply_topic).direction is not Direction.EVENTS:
            raise DefinitionError(
                f"reply_topic {self.reply_topic!r} is not an events topic"
            )

    @property
    def service(self) -> str:
        return parse_topic(self.command_topic).service


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One step: its forward action and, if it can be undone, the compensation.

    What a step *in doubt* (its last attempt went unanswered: it may or may not
    have taken effect) means depends on the kind of step:

    - with a compensation, the saga gives up on it and compensates it too: the
      compensation copes with an effect that never happened and bars a late
      arrival (the refund by sagaId refuses a payment that comes after it);
    - without one, the saga cannot undo it, so it never compensates around it
      while it is in doubt: the command is sent again, at the retry policy's
      longest backoff, until the participant answers. All attempts carry one
      idempotency key, so the answer is the one outcome of the step. Such a
      step after a compensable one is the saga's pivot: once it succeeded, the
      saga can only go forward.
    """

    name: str
    action: Action
    compensation: Action | None = None

    @property
    def retried_until_answered(self) -> bool:
        return self.compensation is None


#: What a JSON value must be, by name; ``bool`` is not an integer here, as in
#: JSON (Python's bool is an int).
_KINDS: Final[Mapping[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class InputType(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one input field must hold: a JSON ``kind`` and, for a number, its
    least value (``minimum``, included)."""

    kind: Literal["string", "integer", "number", "boolean"]
    minimum: int | float | None = None

    def __post_init__(self) -> None:
        if self.minimum is not None and self.kind not in ("integer", "number"):
            raise DefinitionError(f"a {self.kind} input has no minimum")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not of this type, or ``None`` if it is."""
        wanted = f"an {self.kind}" if self.kind == "integer" else f"a {self.kind}"
        if self.minimum is not None:
            wanted += f" of at least {self.minimum:g}"
        if isinstance(value, bool) != (self.kind == "boolean") or not isinstance(
            value, _KINDS[self.kind]
        ):
            return f"must be {wanted}, got {value!r}"
        below = isinstance(value, int | float) and (
            self.minimum is not None and value < self.minimum
        )
        return f"must be {wanted}, got {value!r}" if below else None


class SagaDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A saga type. ``inputs`` are the fields a start request must carry;
    ``input_types`` what some of them must hold (a request that breaks them is
    refused before the saga starts, not failed by a participant later).

    ``version`` numbers the definition; ``previous`` keeps the versions it
    replaces, so a saga runs to its end on the version it started with
    (:meth:`at`) unless an operator moves it (``saga migrate``)."""

    name: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...] = ()
    input_types: dict[str, InputType] = {}
    version: Positive = 1
    previous: tuple[SagaDefinition, ...] = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise DefinitionError(f"saga {self.name!r} has no steps")
        numbers = [self.version]
        for older in self.previous:
            if older.name != self.name or older.previous:
                raise DefinitionError(
                    f"saga {self.name!r}: a previous version must be saga "
                    f"{self.name!r} itself, without versions of its own"
                )
            if older.version in numbers or older.version > self.version:
                raise DefinitionError(
                    f"saga {self.name!r}: previous version {older.version} must be "
                    f"below version {self.version} and given once"
                )
            numbers.append(older.version)
        undeclared = sorted(set(self.input_types) - set(self.inputs))
        if undeclared:
            raise DefinitionError(
                f"saga {self.name!r}: input_types names {', '.join(undeclared)}, "
                f"not among the inputs {list(self.inputs)}"
            )
        seen: list[str] = []
        for step in self.steps:
            if not _is_name(step.name):
                raise DefinitionError(
                    f"saga {self.name!r}: step name {step.name!r} must be letters, "
                    "digits and underscores"
                )
            if step.name in seen:
                raise DefinitionError(f"saga {self.name!r}: step {step.name!r} twice")
            _check_template(self, step.name, step.action.payload, seen)
            if step.compensation is not None:
                # A compensation may use its own step's reply: it undoes it.
                _check_template(
                    self, step.name, step.compensation.payload, [*seen, step.name]
                )
            seen.append(step.name)
        pivot = _pivot(self.steps)
        if pivot is not None and pivot.name != self.steps[-1].name:
            later = self.steps[self.index(pivot.name) + 1].name
            raise DefinitionError(
                f"saga {self.name!r}: step {later!r} comes after the pivot "
                f"{pivot.name!r} (no compensation, after a step that has one): a "
                f"failure of {later!r} would undo the steps before {pivot.name!r} "
                f"around it, which cannot be undone. Give {pivot.name!r} a "
                "compensation or make it the last step"
            )

    @property
    def versions(self) -> list[int]:
        return sorted([self.version, *(d.version for d in self.previous)])

    def at(self, version: int) -> SagaDefinition:
        """This saga type as of ``version``: itself, or a previous version."""
        if version == self.version:
            return self
        for older in self.previous:
            if older.version == version:
                return older
        raise DefinitionError(
            f"saga {self.name!r} has no version {version} (it has "
            f"{', '.join(map(str, self.versions))}): a saga that started on it "
            "needs it kept in previous"
        )

    def index(self, name: str) -> int:
        """The step's position; sagas have a handful of steps, so a scan is cheapest."""
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise DefinitionError(f"saga {self.name!r} has no step {name!r}")

    def step(self, name: str) -> Step:
        return self.steps[self.index(name)]

    def has_step(self, name: str) -> bool:
        return any(step.name == name for step in self.steps)

    def action_of(self, step_id: str) -> Action | None:
        """The command a wire stepId names: a step's (``<step>``) or its
        compensation's (``<step>.compensate``); ``None`` when there is no such
        step or it has no compensation."""
        name = step_id.removesuffix(COMPENSATE)
        if not self.has_step(name):
            return None
        step = self.step(name)
        return step.compensation if step_id.endswith(COMPENSATE) else step.action

    def input_problems(self, input: Mapping[str, Any]) -> list[str]:
        """What is wrong with the given fields of ``input``, one line each."""
        problems = []
        for name, kind in self.input_types.items():
            problem = kind.problem(input[name]) if name in input else None
            if problem is not None:
                problems.append(f"{name} {problem}")
        return problems


def _pivot(steps: tuple[Step, ...]) -> Step | None:
    """The first step with no compensation that follows one with a compensation."""
    compensable = False
    for step in steps:
        if step.compensation is not None:
            compensable = True
        elif compensable:
            return step
    return None


def _is_name(name: str) -> bool:
    return bool(name) and name.replace("_", "a").isalnum() and name.isascii()


def _check_template(
    definition: SagaDefinition, step: str, template: Any, earlier: list[str]
) -> None:
    if isinstance(template, Mapping):
        for value in template.values():
            _check_template(definition, step, value, earlier)
    elif isinstance(template, list | tuple):
        for value in template:
            _check_template(definition, step, value, earlier)
    elif isinstance(template, str) and _is_reference(template):
        root, *path = template[1:].split(".")
        where = f"saga {definition.name!r}, step {step!r}: {template!r}"
        if root == "input":
            if len(path) != 1 or (
                definition.inputs and path[0] not in definition.inputs
            ):
                raise DefinitionError(
                    f"{where} must name one of the inputs {list(definition.inputs)}"
                )
        elif root == "steps":
            if len(path) < 2 or path[0] not in earlier:
                raise DefinitionError(
                    f"{where} must name an earlier step's reply field "
                    f"($steps.<step>.<field>; earlier steps: {earlier})"
                )
        elif root == "saga":
            if path != ["id"]:
                raise DefinitionError(f"{where}: only $saga.id is known")
        else:
            raise DefinitionError(
                f"{where}: references start with $input., $steps. or $saga.id "
                "(write $$ for a literal $)"
            )


def _is_reference(value: str) -> bool:
    return value.startswith("$") and not value.startswith("$$")


def render(
    template: Any,
    saga_id: str,
    inputs: Mapping[str, Any],
    replies: Mapping[str, Mapping[str, Any]],
) -> Any:
    """Fill a payload template; raises :class:`PayloadError` naming what is missing."""
    if isinstance(template, Mapping):
        return {k: render(v, saga_id, inputs, replies) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render(v, saga_id, inputs, replies) for v in template]
    if not isinstance(template, str) or not template.startswith("$"):
        return template
    if template.startswith("$$"):
        return template[1:]
    root, *path = template[1:].split(".")
    if root == "saga":
        return saga_id
    if root == "input":
        value: Any = inputs
        source = "the saga input"
    else:
        value = replies.get(path[0])
        source = f"the reply of step {path[0]!r}"
        path = path[1:]
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            raise PayloadError(f"{template}: {source} has no field {part!r}")
        value = value[part]
    return value
