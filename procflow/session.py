"""One instance loaded for an engine operation: what changed, and committing it.

A ``Session`` is the interpreter's checkpoint and hooks for one run: the
checkpoints only mark it changed, ``before_effect`` commits what an earlier
side effect did, and the engine commits the rest when its operation ends.
Each commit writes data, state, bookkeeping, new history lines and the
instance's next due time in one store write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bookkeeping import Bookkeeping
from .errors import ConflictError, storable_text
from .hooks import RunHooks
from .instance import Instance
from .interpreter import CheckpointType
from .observe import Observed
from .state import State, ThreadStatus, WaitEventStatus, WorkflowStatus
from .state_codec import encode_state
from .stores.base import HistoryEntry, InstanceRecord
from .timers import due_at as timer_due_at
from .workflow_type import WorkflowType

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Session"]

_RUNNABLE = (ThreadStatus.EXECUTING, ThreadStatus.RESUMING)

# Statuses of an instance whose run is over: nothing is due for it.
_OVER = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)

# Event statuses of a parking still waiting for its event.
_PARKED = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP, WaitEventStatus.SETUP_ERROR)

# Event statuses that the next resume works on again (a failed setup or teardown).
_RETRIED = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP_ERROR, WaitEventStatus.TEARDOWN_ERROR)


class Session(RunHooks):
    """A loaded instance and what an operation changed in it."""

    def __init__(
        self,
        engine: Engine,
        wtype: WorkflowType,
        workflow: Any,
        state: State,
        *,
        version: int = 0,
        correlation_id: str | None = None,
        created_at: float = 0.0,
        updated_at: float | None = None,
        meta: Bookkeeping | None = None,
        stored_due_at: float | None = None,
        stored_data: str = "",
    ) -> None:
        self.engine = engine
        self.wtype = wtype
        self.workflow = workflow
        self.state = state
        self.version = version
        self.correlation_id = correlation_id
        self.created_at = created_at
        self.updated_at = created_at if updated_at is None else updated_at
        self.meta = meta or Bookkeeping()
        # The due time the row had when it was loaded: for a run in flight,
        # when it counts as abandoned.
        self.stored_due_at = stored_due_at
        # The row's due time as this session last loaded, committed or renewed it:
        # until then no worker takes the instance (None: no worker takes it at all).
        self.held_until = stored_due_at
        # Whether the next commit holds the row for stale_after whatever is due: an
        # effect (a retried step, say) is about to run.
        self.holding = False
        # The workflow data as the row holds it (JSON), for repairs of data that no longer loads.
        self.stored_data = stored_data
        self.dirty = False
        # Whether user code with side effects ran since the last commit: its
        # result must be committed before the next one runs.
        self.effect_ran = False
        # Whether the run stopped for a failed step whose retry is due at once, leaving
        # the instance to a worker at once rather than once it looks abandoned.
        self.left_to_worker = False
        self.committed = False
        # Whether the row marks a cancel in progress: the mark is committed before a
        # compensation runs, so that a cancel cut short there is carried on.
        self.cancel_stored = state.cancelling
        self.history: list[HistoryEntry] = []
        # The history's transitions, told to the observers once they are committed.
        self.observed: list[Observed] = []
        self.reply: tuple[str, str] | None = None

    @property
    def id(self) -> str:
        return self.state.id

    # -- RunHooks and checkpoint ---------------------------------------------

    def checkpoint(self, kind: CheckpointType) -> None:
        self.dirty = True

    async def before_effect(self) -> None:
        # A setup (the only effect of a parked, WAITING run) may hand out a link
        # to the instance: a never-stored instance is stored first.
        never_stored = self.version == 0 and self.state.status == WorkflowStatus.WAITING
        cancel_unstored = self.state.cancelling and not self.cancel_stored
        if self.effect_ran or never_stored or cancel_unstored:
            await self._commit_holding()
        elif self.version:
            await self._hold_for_a_step()
        self.effect_ran = True

    async def _commit_holding(self) -> None:
        """Commit, holding the row for ``stale_after`` whatever is due: an effect is about
        to run (a retried step, say, whose retry time would make the row due at once)."""
        self.holding = True
        try:
            await self.commit()
        finally:
            self.holding = False

    async def _hold_for_a_step(self) -> None:
        """Make sure no worker takes the instance while the coming effect runs.

        A worker's claim holds a row only for its lease, and a row loaded to
        deliver an event holds until its next timer: an effect run under either
        could run again in another worker. So, unless the row is held for
        half of ``stale_after`` more, it is held for ``stale_after`` (the
        contract: no step runs longer) before the effect runs. Holding takes
        the row (its version grows): of two processes that loaded one version,
        only one runs the effect.

        Raises:
            ConflictError: someone else saved the instance since it was loaded.
        """
        held_until = self.held_until
        now = self.engine.clock.now()
        stale_after = self.engine.stale_after
        if held_until is None or held_until >= now + stale_after / 2:
            return
        renew = getattr(self.engine.store, "renew_lease", None)
        if renew is None:  # a store of the application's own, older than the method
            await self._commit_holding()
            return
        if not await renew(self.state.id, self.version, now + stale_after):
            raise ConflictError(
                f"instance {self.state.id!r} was saved by someone else since this run loaded it; "
                "what was to run next did not run here, and runs from what they saved"
            )
        self.version += 1
        self.held_until = now + stale_after

    def may_run(self, thread: str) -> bool:
        """Hold the thread of a step that failed: until its retry is due, or for good."""
        failure = self.meta.failure
        if failure is not None and failure.thread == thread:
            return False
        retry_at = self.meta.retries.get(thread)
        return retry_at is None or retry_at <= self.engine.clock.now()

    def transition(self, kind: str, name: str = "", thread: str = "", detail: str = "") -> None:
        at = self.engine.clock.now()
        detail = storable_text(detail)
        observed = Observed(kind, self.state.id, self.wtype.name, name, thread, detail, at)
        if kind == "step_started":
            # Never stored: the history keeps what happened, not what began. Told at
            # once when all before it is committed; otherwise (a start's first run,
            # stored once it parks; a teardown before the step) it waits for their
            # commit, so a run that is undone tells nothing it would have told.
            if self.observed or self.version == 0:
                self.observed.append(observed)
            else:
                self.engine.observe(observed)
            return
        # Told once committed: a run that fails before its commit (data that cannot be
        # stored, a conflict) is undone, and so is what it would have told.
        self.observed.append(observed)
        self.history.append(HistoryEntry(at, kind, name, thread, detail))
        if kind == "step" and thread in self.meta.attempts:
            # A step of the thread went through: the failures it waited on no longer count.
            del self.meta.attempts[thread]
            self.meta.retries.pop(thread, None)
        self.dirty = True

    # -- committing ----------------------------------------------------------

    @property
    def status(self) -> WorkflowStatus:
        """The instance's status as the engine reports it (``FAILED`` included)."""
        return WorkflowStatus.FAILED if self.meta.failure else self.state.status

    def due_at(self, now: float) -> float | None:
        """When a worker should next look at the instance, or ``None``."""
        if self.meta.failure is not None:
            return None
        if self.state.status in _OVER and not self.state.cancelling:
            return None
        if self.state.cancelling or self.holding or (self.run_in_flight() and not self.left_to_worker):
            # A run or a cancel in progress: if its process dies, a worker carries it on once
            # it looks abandoned. Until then nothing else is due: a timer or a retry whose time
            # comes meanwhile waits for the run's last commit, so that no worker claims the
            # instance while a step of it runs.
            return now + self.engine.stale_after
        due = [at for t in self.state.threads for e in t.wait_events if (at := timer_due_at(e)) is not None]
        if self.meta.retry_at is not None:
            due.append(self.meta.retry_at)
        if self.setups_pending():
            due.append(now + self.engine.setup_retry_delay)
        return min(due) if due else None

    def run_in_flight(self) -> bool:
        """Whether a thread is running or about to run: one that can run and is not held
        for a failed step's retry."""
        retries = self.meta.retries
        return any(t.status in _RUNNABLE and t.id not in retries for t in self.state.threads)

    def setups_pending(self) -> bool:
        """Whether a setup or teardown failed (or never ran) and waits for the next resume."""
        return any(e.status in _RETRIED for t in self.state.threads for e in t.wait_events)

    async def commit(self) -> None:
        """Save data, state, bookkeeping and new history in one write (an insert the first time).

        Raises:
            ConflictError: someone else saved the instance since it was loaded.
            DuplicateInstanceError: on the first commit, the id or correlation id is taken.
        """
        now = self.engine.clock.now()
        if self.meta.rejected:
            self._forget_left_parkings()
        if self.state.status in _OVER:
            # Nothing runs any more: no retry can come, no failure count be cleared.
            self.meta.retries = {}
            self.meta.attempts = {}
        record = InstanceRecord(
            id=self.state.id,
            workflow=self.wtype.name,
            status=self.status.value,
            data=self.wtype.encode(self.workflow, self.state.id),
            state=encode_state(self.state),
            version=self.version,
            correlation_id=self.correlation_id,
            created_at=self.created_at or now,
            updated_at=now,
            due_at=self.due_at(now),
            meta=self.meta.dump(),
        )
        store = self.engine.store
        if self.version == 0:
            stored = await store.insert(record, self.history)
        else:
            stored = await store.update(record, self.history, reply=self.reply)
        self.version = stored.version
        self.held_until = stored.due_at
        self.created_at = stored.created_at
        self.updated_at = stored.updated_at
        self.history = []
        self.tell_observers()
        self.reply = None
        self.dirty = False
        self.effect_ran = False
        self.committed = True
        self.cancel_stored = self.state.cancelling

    def _forget_left_parkings(self) -> None:
        """Drop the invalid-payload counts of parkings that are over: each new parking
        counts from zero, even one of a thread started again under the same id at the same pc."""
        parked = {
            Bookkeeping.parking_key(t.id, e.req.name, e.req.pc)
            for t in self.state.threads
            for e in t.wait_events
            if e.status in _PARKED
        }
        self.meta.rejected = {key: n for key, n in self.meta.rejected.items() if key in parked}

    def tell_observers(self) -> None:
        """Tell the engine's observers the transitions not told yet, in order."""
        observed, self.observed = self.observed, []
        for event in observed:
            self.engine.observe(event)

    async def commit_if_changed(self) -> None:
        if self.dirty or self.history or self.version == 0:
            await self.commit()

    def instance(self) -> Instance[Any]:
        return Instance(
            id=self.state.id,
            workflow=self.wtype.name,
            data=self.workflow,
            state=self.state,
            version=self.version,
            correlation_id=self.correlation_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            meta=self.meta.model_copy(deep=True),
        )
