"""What every restart controller shares: the protocol it follows, what it returns, how it fails, its limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_WAIT_SECONDS = 120
MAX_SECONDS = 3600
OUTPUT_LIMIT = 20_000  # characters of a controller's output kept (the end, where the errors are)


class ControllerConfigError(ValueError):
    """A `restart` table that cannot work; `problems` holds one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


class ControllerFailed(Exception):
    """The restart did not happen as asked: the program failed, timed out or is missing, the webhook
    refused, ECS said no. `output` holds what the controller printed or answered."""

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output.strip()[-OUTPUT_LIMIT:]
        super().__init__(message)


@dataclass(frozen=True)
class ControllerResult:
    """What a successful restart call said: its output, and details worth keeping (e.g. a deployment id)."""

    output: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Controller(Protocol):
    kind: ClassVar[str]

    # Read-only: the controllers are frozen dataclasses.
    @property
    def timeout(self) -> float: ...

    def describe(self) -> str: ...

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult: ...
