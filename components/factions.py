"""How sides regard each other: hostile, neutral or allied.

A :class:`Team` names an entity's side; a :class:`Factions` table (part of the host's domain)
says what two sides are to each other. Perception lists hostile units as ``enemies``, allied
ones as ``allies`` and neutral ones as ``neutrals`` in every snapshot, so a neutral is never
offered as a target by GOAP, the behaviour tree or the model's schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType


class Relation(str, Enum):
    HOSTILE = "hostile"
    NEUTRAL = "neutral"
    ALLIED = "allied"


_NO_PAIRS: Mapping[frozenset[str], Relation] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Factions:
    """Relations between sides. A side is always allied with itself; a pair listed in
    ``pairs`` has that relation; a side in ``neutral`` is neutral to every other side; any
    other pair has ``default`` (hostile unless told otherwise, as two armies would)."""

    pairs: Mapping[frozenset[str], Relation] = field(default_factory=lambda: _NO_PAIRS)
    neutral: frozenset[str] = frozenset()
    default: Relation = Relation.HOSTILE

    @staticmethod
    def of(
        *,
        neutral: Iterable[str] = (),
        allied: Iterable[tuple[str, str]] = (),
        hostile: Iterable[tuple[str, str]] = (),
        default: Relation = Relation.HOSTILE,
    ) -> Factions:
        """``Factions.of(neutral=["civilian"], allied=[("blue", "green")])``."""
        pairs: dict[frozenset[str], Relation] = {}
        for rel, given in ((Relation.ALLIED, allied), (Relation.HOSTILE, hostile)):
            for a, b in given:
                if a == b:
                    raise ValueError(f"a side is always allied with itself: ({a!r}, {b!r})")
                key = frozenset((a, b))
                if pairs.get(key, rel) is not rel:
                    raise ValueError(f"sides {a!r} and {b!r} are given two relations")
                pairs[key] = rel
        return Factions(MappingProxyType(pairs), frozenset(neutral), Relation(default))

    def relation(self, a: str, b: str) -> Relation:
        """What side ``b`` is to side ``a`` (symmetric)."""
        if a == b:
            return Relation.ALLIED
        rel = self.pairs.get(frozenset((a, b)))
        if rel is not None:
            return rel
        if a in self.neutral or b in self.neutral:
            return Relation.NEUTRAL
        return self.default

    def hostile(self, a: str, b: str) -> bool:
        return self.relation(a, b) is Relation.HOSTILE


DEFAULT_FACTIONS = Factions()
"""Every other side is hostile (the behaviour before factions existed)."""
