"""A small behaviour-tree kernel: Sequence, Selector, Condition and Action nodes.

Lifecycle (as in py_trees, stated once and kept everywhere): a node's :meth:`Node.tick`
calls ``initialise`` when it was not already RUNNING, then ``update``; when the result is no
longer RUNNING, ``terminate`` runs with that status. Expected outcomes are
:class:`Status` values, never exceptions.

Ticking a tree is pure with respect to the world: nodes read a :class:`BtContext` (the
agent's snapshot plus a scratch blackboard) and an Action node *proposes* an
:class:`ActionStep` by writing ``ctx.step``; the caller decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import WorldSnapshot


class Status(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    RUNNING = "running"


@dataclass(slots=True)
class BtContext:
    """What a tick sees and where an Action node leaves its proposal."""

    snapshot: WorldSnapshot
    blackboard: dict[str, Any] = field(default_factory=dict)
    step: ActionStep | None = None
    trace: list[str] = field(default_factory=list)
    """Names of the nodes that ran, in order (for the HUD and tests)."""


class Node:
    """Base node. Subclasses override :meth:`update` (and optionally the hooks)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.status: Status | None = None

    def tick(self, ctx: BtContext) -> Status:
        if self.status is not Status.RUNNING:
            self.initialise(ctx)
        ctx.trace.append(self.name)
        status = self.update(ctx)
        if status is not Status.RUNNING:
            self.terminate(ctx, status)
        self.status = status
        return status

    def initialise(self, ctx: BtContext) -> None:
        """Called before the first update of a fresh run."""

    def update(self, ctx: BtContext) -> Status:
        raise NotImplementedError

    def terminate(self, ctx: BtContext, status: Status) -> None:
        """Called once when the node leaves RUNNING (or finishes in one tick)."""

    def reset(self) -> None:
        self.status = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Composite(Node):
    def __init__(self, name: str, children: Seq[Node]) -> None:
        super().__init__(name)
        if not children:
            raise ValueError(f"{type(self).__name__} {name!r} needs at least one child")
        self.children: list[Node] = list(children)

    def reset(self) -> None:
        super().reset()
        for c in self.children:
            c.reset()


class Sequence(Composite):
    """Ticks children in order; fails on the first failure, runs while one runs, else succeeds.

    Memoryless: every tick starts from the first child, so conditions are re-checked each frame
    (the reactive style game AI wants).
    """

    def update(self, ctx: BtContext) -> Status:
        for child in self.children:
            s = child.tick(ctx)
            if s is not Status.SUCCESS:
                return s
        return Status.SUCCESS


class Selector(Composite):
    """Ticks children in priority order; returns the first non-failure, else fails."""

    def update(self, ctx: BtContext) -> Status:
        for child in self.children:
            s = child.tick(ctx)
            if s is not Status.FAILURE:
                return s
        return Status.FAILURE


class Condition(Node):
    """SUCCESS when ``predicate(ctx)`` is true, else FAILURE. Never RUNNING."""

    def __init__(self, name: str, predicate: Callable[[BtContext], bool]) -> None:
        super().__init__(name)
        self.predicate = predicate

    def update(self, ctx: BtContext) -> Status:
        return Status.SUCCESS if self.predicate(ctx) else Status.FAILURE


class Action(Node):
    """Proposes a step: ``make(ctx)`` returns the step (-> RUNNING, written to ``ctx.step``)
    or ``None`` when the action is not possible now (-> FAILURE).

    RUNNING means "this is what I want to be doing"; the host executes it and the tree is
    ticked again for the next decision.
    """

    def __init__(self, name: str, make: Callable[[BtContext], ActionStep | None]) -> None:
        super().__init__(name)
        self.make = make

    def update(self, ctx: BtContext) -> Status:
        step = self.make(ctx)
        if step is None:
            return Status.FAILURE
        ctx.step = step
        return Status.RUNNING


def tick_tree(
    root: Node, snapshot: WorldSnapshot, blackboard: dict[str, Any] | None = None
) -> tuple[Status, ActionStep | None, list[str]]:
    """Tick ``root`` once for ``snapshot``; return its status, the proposed step and the trace."""
    ctx = BtContext(snapshot=snapshot, blackboard={} if blackboard is None else blackboard)
    status = root.tick(ctx)
    return status, ctx.step, ctx.trace
