"""Storage backends behind one protocol; chosen by URL scheme."""

from .base import IdempotencyRecord, Store, Tx, open_store

__all__ = ["IdempotencyRecord", "Store", "Tx", "open_store"]
