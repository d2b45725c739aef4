"""Names used across the catalog: one definition each."""

from __future__ import annotations

import re

from django.core.validators import RegexValidator

# A catalog name: it appears in URLs, operation targets and TOML files.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
slug = RegexValidator(SLUG_PATTERN.pattern, "Lower-case letters, digits and dashes.")

# Secrets are referenced by the NAME of the environment variable holding them, never stored.
ENV_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
env_name = RegexValidator(ENV_NAME_PATTERN.pattern, "Use an environment variable name, e.g. HADR_DEMO_PASSWORD.")
