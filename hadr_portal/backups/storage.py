"""From a StorageTarget row to a storage adapter (credentials read from the environment by name)."""

from __future__ import annotations

import os

from hadr_portal.adapters.storage import Storage, storage_from_config

from .models import StorageTarget


def storage_for(storage_target: StorageTarget) -> Storage:
    return storage_from_config(storage_target.kind, storage_target.config, os.environ)
