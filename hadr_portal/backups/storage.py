"""From a StorageTarget row to a storage adapter (credentials read from the environment by name)."""

from __future__ import annotations

import os

from hadr_portal.adapters.storage import Storage, storage_from_config

from .models import StorageTarget


def storage_for(target: StorageTarget) -> Storage:
    return storage_from_config(target.kind, target.config, os.environ)
