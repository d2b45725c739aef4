"""Names used across the catalog: one definition each."""

from __future__ import annotations

import re

from django.core.validators import RegexValidator

# Secrets are referenced by the NAME of the environment variable holding them, never stored. The pattern is
# defined beside the code that hands variables to programs (adapters import no Django) and re-exported here.
from hadr_portal.adapters.commands import ENV_NAME_PATTERN

__all__ = ["ENV_NAME_PATTERN", "SLUG_PATTERN", "env_name", "slug"]

# A catalog name: it appears in URLs, operation targets and TOML files.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
slug = RegexValidator(SLUG_PATTERN.pattern, "Lower-case letters, digits and dashes.")

env_name = RegexValidator(ENV_NAME_PATTERN.pattern, "Use an environment variable name, e.g. HADR_DEMO_PASSWORD.")
