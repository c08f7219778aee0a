"""The former name of `metalab.claims`: the same module under both names until every
importer uses the new one (then this file goes)."""

import sys

from . import claims
from .claims import (
    HEARTBEAT_SECONDS,
    HOST_TAG,
    LEASE_SECONDS,
    OWNERLESS_SECONDS,
    Heartbeat,
    heartbeat,
    is_alive,
    owner,
    tag_owner,
    writer_tag,
)

__all__ = [
    "HEARTBEAT_SECONDS",
    "HOST_TAG",
    "LEASE_SECONDS",
    "OWNERLESS_SECONDS",
    "Heartbeat",
    "heartbeat",
    "is_alive",
    "owner",
    "tag_owner",
    "writer_tag",
]

sys.modules[__name__] = claims
