"""Who reads an operation's output: `{% if operation|output_visible_to:user %}` and `{{ operation|output_roles }}`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import template

from hadr_portal.core.models import Operation
from hadr_portal.core.operations import output_roles as roles_of
from hadr_portal.core.operations import output_visible

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

register = template.Library()


@register.filter
def output_visible_to(operation: Operation | None, user: Actor | None) -> bool:
    """True when `user` may read the operation's log lines, error and result (core.operations.output_visible)."""
    return operation is not None and user is not None and output_visible(user, operation)


@register.filter
def output_roles(operation: Operation) -> str:
    return roles_of(operation)
