"""Hooks for other apps: alerts (here) and incidents (later) react to committed transitions."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the transaction that recorded a service's state change commits; kwargs: transition.
transition_committed = Signal()
