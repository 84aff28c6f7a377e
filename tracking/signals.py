"""Hooks for higher layers (segments, campaigns). Sent inside the ingest transaction."""

from django.dispatch import Signal

# site, pairs: list of (source profile id, target profile id) just merged. Receivers move
# their own rows (carts, memberships) from source to target in the same transaction.
profiles_merged = Signal()

# site, profile_ids: profiles deleted on request (right to be forgotten).
profiles_forgotten = Signal()
