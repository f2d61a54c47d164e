"""Example host games written against esper_arbiter's public API only."""
