"""Who must use two-factor, and what an account has enrolled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from hadr_portal.core.permissions import user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from hadr_portal.core.permissions import Actor


def two_factor_required(user: Actor) -> bool:
    """Whether this account must sign in with a code: HADR_2FA_REQUIRED, and the account is an administrator or
    holds one of HADR_2FA_ROLES (the roles that can run destructive actions)."""
    if not settings.TWO_FACTOR_REQUIRED or not user.is_authenticated:
        return False
    return bool(user.is_superuser or set(user_roles(user)) & set(settings.TWO_FACTOR_ROLES))


def authenticator(user: User, *, confirmed: bool = True) -> TOTPDevice | None:
    """The account's authenticator app (TOTP device): confirmed, or the one being enrolled."""
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("-pk").first()


def is_enrolled(user: User) -> bool:
    """An account is enrolled when it has a confirmed authenticator; recovery codes only back it up."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


@dataclass(frozen=True)
class TwoFactorState:
    """For templates and the middleware: `request.two_factor`."""

    enrolled: bool
    required: bool
    verified: bool


def two_factor_state(user: Actor) -> TwoFactorState:
    """The account's two-factor state; a session verified by a code is enrolled without asking the database."""
    if not user.is_authenticated:
        return TwoFactorState(enrolled=False, required=False, verified=False)
    verified = bool(getattr(user, "is_verified", lambda: False)())
    return TwoFactorState(
        enrolled=verified or is_enrolled(user),
        required=two_factor_required(user),
        verified=verified,
    )
