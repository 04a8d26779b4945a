"""procflow: long-running processes as plain Python.

A workflow is plain data whose ``definition()`` returns a tree of statements;
the interpreter walks it, parks threads on events, and hands every change of
state to a checkpoint callback so the instance can live in any store.
"""

from .errors import (
    CallbackNotFound,
    DefinitionError,
    HandlerError,
    PayloadError,
    ProcflowError,
    SetupError,
    StaleCallback,
    StepError,
    WorkflowFinishedError,
)
from .export import DEFINITION_SCHEMA, STATE_SCHEMA, ExportError, to_json, to_mermaid
from .handlers import Handler
from .interpreter import Checkpoint, CheckpointType, Workflow, cancel, handle_callback, resume
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
from .waitgroup import WaitGroup

__version__ = "0.1.0"

__all__ = [
    "DEFINITION_SCHEMA",
    "MAIN_THREAD",
    "STATE_SCHEMA",
    "Break",
    "CallbackNotFound",
    "CallbackRequest",
    "Case",
    "Checkpoint",
    "CheckpointType",
    "Continue",
    "Default",
    "DefinitionError",
    "ExportError",
    "For",
    "Go",
    "Handler",
    "HandlerError",
    "If",
    "On",
    "OnEvent",
    "PayloadError",
    "ProcflowError",
    "Return",
    "S",
    "Section",
    "SetupError",
    "StaleCallback",
    "State",
    "Step",
    "StepError",
    "Stmt",
    "Switch",
    "Thread",
    "ThreadStatus",
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
    "resume",
    "to_json",
    "to_mermaid",
    "validate",
    "walk",
]
