"""``RunHooks``: watch a run of the interpreter, and act before side effects.

The interpreter's ``checkpoint(kind)`` says *that* the state changed; hooks
say *what* happened (for a history or a log) and give a store the moment to
commit before user code with side effects runs, which lets it fold
checkpoints that recorded no side effect into fewer commits.
"""

from __future__ import annotations

__all__ = ["RunHooks"]


class RunHooks:
    """Base class for hooks passed to ``resume``, ``handle_callback`` and ``cancel``.

    Every method does nothing here; override what you need.
    """

    async def before_effect(self) -> None:
        """Called before user code with side effects runs.

        That is a step's action, a ``WaitFor`` handler, a compensation, and
        the ``setup`` or ``teardown`` of a ``Handler`` whose ``side_effects``
        is true. A store that defers commits must commit here what the
        checkpoints since its last commit recorded. Raising stops the run as
        a failing ``checkpoint`` does.
        """

    def may_run(self, thread: str) -> bool:
        """Whether the runnable thread ``thread`` may run now (default: yes).

        A thread held back stays runnable (``RESUMING``) and so does the
        workflow; the engine holds a thread whose failed step waits for its
        retry's backoff, or whose retries ran out.
        """
        return True

    def transition(self, kind: str, name: str = "", thread: str = "", detail: str = "") -> None:
        """Called after something happened.

        ``kind`` is one of ``step_started``, ``step``, ``step_failed``, ``event``, ``setup``,
        ``setup_error``, ``teardown``, ``teardown_error``, ``condition``,
        ``compensated``, ``finished`` and ``cancelled``; ``name`` is the
        statement or event, ``thread`` the thread id, ``detail`` an error
        text or the cancel reason.
        """
