"""Domains the library ships (see :class:`systems.domain.Domain`)."""
