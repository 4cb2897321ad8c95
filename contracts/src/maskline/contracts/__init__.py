"""Versioned msgspec contracts: the single source of truth for every message on the bus."""
