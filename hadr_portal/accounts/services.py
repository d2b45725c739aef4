"""Two-factor devices: enrol an authenticator app, issue recovery codes, check a code, remove it all. Audited."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import User

RECOVERY_CODES = 10
AUTHENTICATOR_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
WRONG_CODE = "That code is not right. Enter the 6 digits your authenticator app shows now, or an unused recovery code."


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of checking a code: the device that accepted it, or why none did (for the operator)."""

    device: Device | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.device is not None


def account_audit(user: User, action: str, *, refused: bool, address: str | None, detail: str) -> None:
    """An audit entry about one account's own sign-in or second factor, acted by that account."""
    audit_record(
        actor=user,
        action=action,
        target=f"user:{user.get_username()}",
        outcome=AuditEntry.Outcome.REFUSED if refused else AuditEntry.Outcome.SUCCESS,
        address=address,
        detail=detail,
    )


def code_normalise(code: str) -> str:
    """Codes are typed by tired people: spaces, dashes and capitals do not matter."""
    return "".join(code.split()).replace("-", "").lower()


def _throttled(device: Device) -> str:
    allowed, info = device.verify_is_allowed()
    if allowed:
        return ""
    until = (info or {}).get("locked_until")
    wait = max(1, math.ceil((until - timezone.now()).total_seconds())) if until else 1
    return f"Too many wrong codes: wait {wait} s, then try again."


def code_verify(*, user: User, code: str) -> CodeCheck:
    """Check a code against the account's confirmed devices: six digits against the authenticator app, anything
    else against the recovery codes (a recovery code works once). A TOTP code is accepted once, within one
    30-second step either side; after each wrong code the device refuses codes for an exponentially growing
    time (django-otp's throttling), so guessing is hopeless."""
    code = code_normalise(code)
    if not code:
        return CodeCheck(None, "Enter the 6-digit code from your authenticator app, or a recovery code.")
    model: type[Device] = TOTPDevice if code.isdigit() and len(code) == 6 else StaticDevice
    with transaction.atomic():
        devices = list(model.objects.filter(user=user, confirmed=True).select_for_update())
        for device in devices:
            if waiting := _throttled(device):
                return CodeCheck(None, waiting)
            if device.verify_token(code):
                return CodeCheck(device)
    return CodeCheck(None, WRONG_CODE)


def authenticator_enrol_start(*, user: User) -> TOTPDevice:
    """The authenticator being enrolled: one unconfirmed TOTP device, kept across reloads of the page (so the
    QR code already scanned stays valid) until it is confirmed with a first code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def authenticator_confirm(
    *, user: User, device: TOTPDevice, code: str, address: str | None
) -> tuple[CodeCheck, list[str]]:
    """Confirm the enrolment with the first code the app shows; on success the account is enrolled, any older
    devices are replaced, and the recovery codes are issued (returned once, never shown again)."""
    code = code_normalise(code)
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user, confirmed=False)
        if waiting := _throttled(device):
            return CodeCheck(None, waiting), []
        if not (code.isdigit() and device.verify_token(code)):
            account_audit(user, "account.two_factor.enrol", refused=True, address=address, detail="wrong first code")
            return CodeCheck(
                None, "That code is not right. Check the time on your phone, and enter the code the app shows now."
            ), []
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_replace(user)
        account_audit(
            user,
            "account.two_factor.enrol",
            refused=False,
            address=address,
            detail=f"authenticator app enrolled; {len(codes)} recovery codes issued",
        )
    return CodeCheck(device), codes


def _recovery_codes_replace(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def recovery_codes_regenerate(*, user: User, address: str | None) -> list[str]:
    """New recovery codes; the old ones stop working at once."""
    with transaction.atomic():
        codes = _recovery_codes_replace(user)
        account_audit(
            user,
            "account.recovery_codes.regenerate",
            refused=False,
            address=address,
            detail=f"{len(codes)} new recovery codes; the old ones no longer work",
        )
    return codes


def two_factor_remove(*, user: User, code: str, address: str | None) -> CodeCheck:
    """Remove the authenticator and the recovery codes, proven with a current code (or a recovery code)."""
    check = code_verify(user=user, code=code)
    if not check.ok:
        account_audit(user, "account.two_factor.remove", refused=True, address=address, detail=check.error)
        return check
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        account_audit(
            user,
            "account.two_factor.remove",
            refused=False,
            address=address,
            detail="authenticator app and recovery codes removed",
        )
    return check
