"""procflow: long-running processes as plain Python.

A workflow is plain data whose ``definition()`` returns a tree of statements;
the interpreter walks it, parks threads on events, and hands every change of
state to a checkpoint callback so the instance can live in any store.
"""

from .bookkeeping import Buffered, Failure
from .clock import Clock, SystemClock, TestClock
from .engine import Engine
from .errors import (
    CallbackNotFound,
    ConflictError,
    CorruptInstanceError,
    DefinitionError,
    DuplicateInstanceError,
    HandlerError,
    IdempotencyKeyReused,
    InstanceNotFound,
    PayloadError,
    ProcflowError,
    ReentrantCallError,
    SetupError,
    StaleCallback,
    StepError,
    StoreError,
    UnknownWorkflowError,
    UnstorableDataError,
    WorkflowFinishedError,
)
from .export import DEFINITION_SCHEMA, STATE_SCHEMA, ExportError, to_dot, to_json, to_mermaid
from .handlers import Handler
from .hooks import RunHooks
from .instance import Instance, InstanceSummary, Parking
from .interpreter import Checkpoint, CheckpointType, Workflow, cancel, handle_callback, resume
from .observe import LoggingObserver, Observed, Observer
from .retention import PurgeNotSupported
from .retry import Backoff, Retry
from .state import (
    MAIN_THREAD,
    CallbackRequest,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)
from .statements import (
    Break,
    Case,
    Continue,
    Default,
    For,
    Go,
    If,
    On,
    OnEvent,
    Return,
    S,
    Section,
    Step,
    Stmt,
    Switch,
    Wait,
    WaitFor,
    validate,
    walk,
)
from .stores import HistoryEntry, InstanceRecord, MemoryStore, PostgresStore, SQLiteStore, Store, open_store
from .timers import Sleep, Timer
from .waitgroup import WaitGroup

__version__ = "0.1.0"

__all__ = [
    "DEFINITION_SCHEMA",
    "MAIN_THREAD",
    "STATE_SCHEMA",
    "Backoff",
    "Break",
    "Buffered",
    "CallbackNotFound",
    "CallbackRequest",
    "Case",
    "Checkpoint",
    "CheckpointType",
    "Clock",
    "ConflictError",
    "Continue",
    "CorruptInstanceError",
    "Default",
    "DefinitionError",
    "DuplicateInstanceError",
    "Engine",
    "ExportError",
    "Failure",
    "For",
    "Go",
    "Handler",
    "HandlerError",
    "HistoryEntry",
    "IdempotencyKeyReused",
    "If",
    "Instance",
    "InstanceNotFound",
    "InstanceRecord",
    "InstanceSummary",
    "LoggingObserver",
    "MemoryStore",
    "Observed",
    "Observer",
    "On",
    "OnEvent",
    "Parking",
    "PayloadError",
    "PostgresStore",
    "ProcflowError",
    "PurgeNotSupported",
    "ReentrantCallError",
    "Retry",
    "Return",
    "RunHooks",
    "S",
    "SQLiteStore",
    "Section",
    "SetupError",
    "Sleep",
    "StaleCallback",
    "State",
    "Step",
    "StepError",
    "Stmt",
    "Store",
    "StoreError",
    "Switch",
    "SystemClock",
    "TestClock",
    "Thread",
    "ThreadStatus",
    "Timer",
    "UnknownWorkflowError",
    "UnstorableDataError",
    "Wait",
    "WaitEvent",
    "WaitEventStatus",
    "WaitFor",
    "WaitGroup",
    "Workflow",
    "WorkflowFinishedError",
    "WorkflowStatus",
    "cancel",
    "handle_callback",
    "open_store",
    "resume",
    "to_dot",
    "to_json",
    "to_mermaid",
    "validate",
    "walk",
]
