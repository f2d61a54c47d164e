"""Batch sizing: how many agents to plan in one prompt, following latency and cost.

:class:`AdaptiveBatchSize` halves the batch size when a batch runs past the latency target,
grows it by one after ``grow_after`` fast full batches, and drops to 1 when a batch costs more
per request than single requests do; after a few such batches in a row it settles at 1 (no
batching) on that backend.
"""

from __future__ import annotations

import logging

log = logging.getLogger("esper_arbiter.systems.llm.batching")
"""Batching's logger: these lines are batching's, wherever the code lives."""


class AdaptiveBatchSize:
    """Batch size that follows latency and pays its way.

    ``record(batch_size, latency_s)`` after every call that got a reply (a single request
    counts as a batch of 1). Two rules, both deterministic:

    - **Latency.** Slow (latency > ``latency_target_s``): ``value = max(minimum, min(value,
      batch_size) // 2)``. Fast (latency <= ``grow_margin`` * target) *and* full
      (``batch_size >= value``, so the current size was really tried): one more fast step;
      after ``grow_after`` in a row, ``value += 1`` up to ``maximum``. Anything else resets
      the streak.
    - **Throughput.** A batch must cost less per request than single requests do: with the
      median latency of the last five single requests as the baseline, a batch whose
      ``latency / batch_size`` is above ``(1 - min_gain)`` * baseline did not pay, and the size
      drops to ``minimum``. After ``settle_after`` such batches in a row (no paying batch in
      between) the size *settles* at ``minimum`` for good (:attr:`settled`): on that backend
      batching does not pay (llama.cpp on a CPU reuses the shared prompt prefix between single
      requests, and a batch only adds output to one sequential stream). Batches are compared
      only once a single request has been timed.
    """

    def __init__(
        self,
        initial: int = 4,
        *,
        minimum: int = 1,
        maximum: int = 8,
        latency_target_s: float = 20.0,
        grow_after: int = 2,
        grow_margin: float = 0.8,
        min_gain: float = 0.1,
        settle_after: int = 3,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if latency_target_s <= 0:
            raise ValueError("latency_target_s must be > 0")
        if grow_after < 1:
            raise ValueError("grow_after must be >= 1")
        if not 0.0 <= min_gain < 1.0:
            raise ValueError("min_gain must be in [0, 1)")
        if settle_after < 1:
            raise ValueError("settle_after must be >= 1")
        self.minimum = minimum
        self.maximum = maximum
        self.latency_target_s = latency_target_s
        self.grow_after = grow_after
        self.grow_margin = grow_margin
        self.min_gain = min_gain
        self.settle_after = settle_after
        self._value = min(maximum, max(minimum, initial))
        self._streak = 0
        self._singles: list[float] = []
        self._losses = 0
        self.settled = False
        """True once batching was shown not to pay: the size stays at ``minimum``."""
        self.history: list[tuple[int, float, int]] = []
        """(batch_size, latency_s, value after) of the last 64 batches, for logs and the HUD."""

    @property
    def value(self) -> int:
        """The batch size to use next."""
        return self._value

    @property
    def single_cost_s(self) -> float | None:
        """Median latency of the last five single requests (the throughput baseline)."""
        if not self._singles:
            return None
        ordered = sorted(self._singles)
        return ordered[len(ordered) // 2]

    def record(self, batch_size: int, latency_s: float) -> int:
        """Account for one finished call; returns the new :attr:`value`."""
        size = max(1, batch_size)
        if size == 1:
            self._singles.append(latency_s)
            del self._singles[:-5]
        baseline = self.single_cost_s
        unpaid = (
            size > 1
            and baseline is not None
            and latency_s / size > (1.0 - self.min_gain) * baseline
        )
        if self.settled:
            pass
        elif unpaid:
            self._losses += 1
            self._streak = 0
            assert baseline is not None
            log.info(
                "batch of %d took %.2fs per request, single requests %.2fs: batching does not "
                "pay (%d/%d); batch size %d -> %d",
                size, latency_s / size, baseline, self._losses, self.settle_after,
                self._value, self.minimum,
            )
            self._value = self.minimum
            if self._losses >= self.settle_after:
                self.settled = True
                log.warning(
                    "batching does not pay on this backend (%d batches in a row cost more per "
                    "request than single requests): batch size settles at %d",
                    self._losses, self.minimum,
                )
        elif latency_s > self.latency_target_s:
            if size > 1:
                self._losses = 0
            new = max(self.minimum, min(self._value, size) // 2)
            if new != self._value:
                log.info(
                    "batch of %d took %.1fs (> %.1fs target): batch size %d -> %d",
                    size, latency_s, self.latency_target_s, self._value, new,
                )
            self._value = new
            self._streak = 0
        else:
            if size > 1 and baseline is not None:
                self._losses = 0
            if latency_s <= self.grow_margin * self.latency_target_s and size >= self._value:
                self._streak += 1
                if self._streak >= self.grow_after:
                    self._streak = 0
                    if self._value < self.maximum:
                        log.info("fast batches: batch size %d -> %d", self._value,
                                 self._value + 1)
                        self._value += 1
            else:
                self._streak = 0
        self.history.append((size, latency_s, self._value))
        if len(self.history) > 64:
            del self.history[0]
        return self._value
