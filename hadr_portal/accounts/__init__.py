"""Accounts: two-factor sign-in (TOTP and recovery codes), step-up before destructive actions, sign-in lockouts."""
