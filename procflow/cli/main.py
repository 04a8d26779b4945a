"""The ``procflow`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
from pydantic import TypeAdapter

from .. import __version__
from ..engine import Engine
from ..errors import ProcflowError, UnknownWorkflowError
from ..instance import Instance
from ..observe import LoggingObserver
from ..state import MAIN_THREAD, WorkflowStatus
from ..stores import SQLiteStore, open_store
from ..zero_values import zeroed
from . import operations
from .demo import DemoOrder, run_demo
from .errors import CommandError
from .outcome import retry_note, when
from .table import Style, render_table

__all__ = ["main"]

DEFAULT_DB = "sqlite:///procflow.db"

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def _port(text: str) -> int:
    """A TCP port to listen on: 0 (any free port, which the server prints) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port; use 1 to 65535 (or 0 for any free port)")
    return value


def _text(text: str) -> str:
    """Text that says something: a reason or a why, which the history keeps."""
    if not text.strip():
        raise argparse.ArgumentTypeError("it is empty; say why (it is kept with the instance)")
    return text


def _key(text: str) -> str:
    """An idempotency key: not blank (an unset shell variable, most likely)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("it is empty; pass the key that names this send")
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def _age(text: str) -> float:
    try:
        return operations.parse_age(text)
    except CommandError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _status(text: str) -> str:
    value = text.upper()
    if value not in WorkflowStatus.__members__:
        raise argparse.ArgumentTypeError(f"{text!r} is not a status; use one of {', '.join(WorkflowStatus)}")
    return value


def _store_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--db`` and ``--app``: on the command itself, and again after each subcommand's name."""
    parser.add_argument(
        "--db",
        default=default,
        help=f"store URL: sqlite:///path.db, postgresql://..., memory:// "
        f"(default: $PROCFLOW_DB, the --app engine's store, or {DEFAULT_DB})",
    )
    parser.add_argument(
        "--app",
        default=default,
        metavar="MODULE:ENGINE",
        help="an Engine (or a function returning one) whose workflow classes to register",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="procflow",
        description="Run and inspect procflow workflow instances.",
    )
    parser.add_argument("--version", action="version", version=f"procflow {__version__}")
    _store_options(parser, None)
    # Given after a subcommand's name, they override the ones before it; absent, they leave them.
    store_options = argparse.ArgumentParser(add_help=False)
    _store_options(store_options, argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=summary, description=summary, parents=[store_options])

    command("demo", "start, approve and deny demo orders (run it twice)")

    p = command("list", "list stored instances")
    p.add_argument("--workflow", help="only this workflow name")
    p.add_argument("--status", action="append", type=_status, help="only this status (repeatable; any case)")
    p.add_argument("--limit", type=_positive_int, default=None, help="at most this many rows")

    p = command("show", "show one instance: state, data and history")
    p.add_argument("id", help="instance id or correlation id")

    p = command("send", "deliver an event to an instance")
    p.add_argument("id", help="instance id or correlation id")
    p.add_argument("event", help="event name")
    p.add_argument("payload", nargs="?", default=None, help="the payload as JSON")
    p.add_argument("--thread", default="", help="thread id, to choose between threads")
    p.add_argument(
        "--idempotency-key",
        type=_key,
        default=None,
        metavar="KEY",
        help="a repeat with this key (and the same event and payload) prints the first reply, runs nothing",
    )

    p = command("resume", "catch an instance up: deliver its overdue timers, run what is runnable")
    p.add_argument("id", help="instance id or correlation id")

    p = command(
        "recover",
        "resume every instance a dead process left running (only while no other process works on the store)",
    )

    p = command("cancel", "cancel an instance")
    p.add_argument("id", help="instance id or correlation id")
    p.add_argument("--reason", required=True, type=_text, help="why (stored with the instance)")
    p.add_argument("--compensate", action="store_true", help="undo completed steps first")

    p = command("retry", "run the failed step of a FAILED instance again, or carry on its cancel cut short")
    p.add_argument("id", help="instance id or correlation id")

    p = command("worker", "deliver due timers and retries until stopped (SIGTERM, Ctrl-C)")
    p.add_argument(
        "--poll", type=_positive_seconds, default=0.5, help="seconds between looks when idle (default 0.5)"
    )
    p.add_argument("--batch", type=_positive_int, default=20, help="instances claimed at a time (default 20)")
    p.add_argument("--quiet", action="store_true", help="print only failures, not each transition")

    p = command("graph", "print a workflow's definition as a Mermaid flowchart")
    p.add_argument("target", nargs="?", metavar="MODULE:WORKFLOW", help="a workflow class (or an instance)")
    p.add_argument("--instance", metavar="ID", help="a stored instance: mark where it is parked, what ran")
    p.add_argument("--svg", metavar="FILE", help="write SVG with Graphviz's dot instead of printing Mermaid")

    p = command("check", "would the current definitions strand in-flight instances?")
    p.add_argument("--workflow", help="only this workflow name")

    p = command("goto", "move a thread of an instance to a named statement (a repair)")
    p.add_argument("id", help="instance id or correlation id")
    p.add_argument("--thread", default=MAIN_THREAD, help=f"thread id (default: {MAIN_THREAD})")
    p.add_argument("--step", required=True, help="the Step (continue after it), Wait or WaitFor to go to")
    _who_why(p)
    p.add_argument("--no-run", action="store_true", help="only move the thread; run it later")

    p = command("edit", "change fields of an instance's data, validated by its model")
    p.add_argument("id", help="instance id or correlation id")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        required=True,
        metavar="FIELD=JSON",
        help="a field and its new value as JSON (repeatable)",
    )
    _who_why(p)

    p = command(
        "purge", "delete instances that finished or were cancelled over --older-than ago, with their history"
    )
    p.add_argument(
        "--older-than",
        required=True,
        type=_age,
        metavar="AGE",
        help="since their last change: seconds, or with s, m, h or d (30d, 12h, 90m, 3600)",
    )
    p.add_argument(
        "--batch", type=_positive_int, default=1000, help="instances deleted per transaction (default 1000)"
    )
    p.add_argument("--dry-run", action="store_true", help="only count them")

    p = command("serve", "serve the instances over HTTP (needs procflow[http])")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default: 8000; 0: any free port)"
    )
    p.add_argument("--root-path", default="", help="the path prefix a proxy serves the app under")
    p.add_argument(
        "--worker", action="store_true", help="also deliver due timers and retries (as procflow worker does)"
    )
    p.add_argument(
        "--poll",
        type=_positive_seconds,
        default=0.5,
        help="with --worker: seconds between looks when idle (default 0.5)",
    )
    return parser


def _who_why(p: argparse.ArgumentParser) -> None:
    p.add_argument("--who", default=None, help="who repairs (default: the OS user name)")
    p.add_argument("--why", required=True, type=_text, help="why (kept in the instance's history)")


def _serve(args: argparse.Namespace) -> int:
    try:
        from ..http.serve import serve
    except ImportError as e:
        print(
            f"procflow: serve needs the HTTP extra (missing {e.name or e}): pip install 'procflow[http]'",
            file=sys.stderr,
        )
        return 1
    return serve(
        _engine(args),
        host=args.host,
        port=args.port,
        root_path=args.root_path,
        worker=args.worker,
        worker_poll_interval=args.poll,
    )


def _import(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CommandError(f"{what} must look like module.path:name, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CommandError(f"cannot import {module_name!r} for {what}: {e}") from e
    except Exception as e:  # the module's own code raised while it was imported
        raise CommandError(
            f"importing {module_name!r} for {what} raised {type(e).__name__}: {e}; "
            f"run `python -c 'import {module_name}'` to see where"
        ) from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CommandError(f"module {module_name!r} has no {attr!r} (from {what} {target!r})") from None


@contextlib.contextmanager
def _current_folder_importable() -> Iterator[None]:
    """The current folder on ``sys.path`` for the whole command, as ``python -m`` puts it there.

    An app's modules are imported from it, and so are the modules its steps,
    handlers and definitions import later, while the command runs. Nothing is
    added when the folder is on the path already (``python -m procflow``).
    """
    here = os.path.realpath(os.getcwd())
    if any(os.path.realpath(entry or os.curdir) == here for entry in sys.path):
        yield
        return
    sys.path.insert(0, here)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(here)


# The commands that may start from an empty store; the others read or change instances.
_MAY_CREATE_THE_STORE = frozenset({"demo", "worker", "serve"})


def _require_existing_sqlite_file(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist: a mistyped path would read as an empty store.

    The scheme is read in any case, as ``open_store`` reads it (``SQLITE:///orders.db``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite" or not rest.startswith("/"):
        return
    path = rest[1:]
    if path and path != ":memory:" and not os.path.exists(path):
        raise CommandError(
            f"there is no SQLite database at {path}; check --db (or $PROCFLOW_DB), "
            "or run `procflow demo` to make one"
        )


def _engine(args: argparse.Namespace) -> Engine:
    app: Engine | None = None
    if args.app:
        app = _import(args.app, "--app")
        if isinstance(app, type) and not issubclass(app, Engine):
            raise CommandError(
                f"--app {args.app!r} is the class {app.__qualname__}, not a procflow.Engine; "
                "point it at the module's engine (module:engine) or a function that returns one"
            )
        if callable(app) and not isinstance(app, Engine):
            try:
                app = app()
            except Exception as e:
                raise CommandError(
                    f"--app {args.app!r}: calling it for the engine raised {type(e).__name__}: {e}"
                ) from e
        if not isinstance(app, Engine):
            raise CommandError(f"--app {args.app!r} is not a procflow.Engine")
    url = args.db or os.environ.get("PROCFLOW_DB")
    if app is not None and not url:
        engine = app
        if isinstance(app.store, SQLiteStore) and args.command not in _MAY_CREATE_THE_STORE:
            _require_existing_sqlite_file(f"sqlite:///{app.store.path}")
    else:
        url = url or DEFAULT_DB
        if args.command not in _MAY_CREATE_THE_STORE:
            _require_existing_sqlite_file(url)
        store = open_store(url)
        # An app's engine keeps its settings (clock, stale_after, observers...) on the --db store.
        engine = app.with_store(store) if app is not None else Engine(store)
    # The demo's workflow serves the demo's store; an app's engine gets only its own.
    if (app is None or args.command == "demo") and "DemoOrder" not in engine.workflows:
        engine.register(DemoOrder)
    return engine


def _describe_store(store: Any) -> str:
    """Where the store keeps its instances, for banners: a SQLite file's path, else the store's class."""
    if isinstance(store, SQLiteStore):
        return store.path
    return type(store).__name__


def _demo_db(args: argparse.Namespace, engine: Engine) -> str | None:
    """The ``--db`` the demo's suggested commands need to find its store; ``None`` when they find it
    without: the default file, or ``$PROCFLOW_DB`` (which they read too)."""
    url = args.db
    if not url and args.app and not os.environ.get("PROCFLOW_DB") and isinstance(engine.store, SQLiteStore):
        url = f"sqlite:///{engine.store.path}"  # the --app engine's own store: they would not use it
    return url if url and url != DEFAULT_DB else None


async def _run(args: argparse.Namespace, style: Style) -> int:
    if args.command == "graph" and not args.instance:
        _graph(args.target, args.svg)
        return 0
    async with _engine(args) as engine:
        if args.command == "check":
            return await operations.check(engine, style, workflow=args.workflow)
        if args.command == "graph":
            await _instance_graph(engine, args)
        elif args.command == "goto":
            who = args.who or operations.default_who()
            return await operations.goto(
                engine,
                args.id,
                thread=args.thread,
                step=args.step,
                who=who,
                why=args.why,
                run=not args.no_run,
                style=style,
            )
        elif args.command == "edit":
            changes = operations.parse_sets(args.sets)
            who = args.who or operations.default_who()
            await operations.edit(engine, args.id, changes, who=who, why=args.why, style=style)
        elif args.command == "purge":
            await operations.purge(engine, older_than=args.older_than, batch=args.batch, dry_run=args.dry_run)
        elif args.command == "demo":
            await run_demo(
                engine, where=_describe_store(engine.store), style=style, db=_demo_db(args, engine)
            )
        elif args.command == "list":
            await _list(engine, args, style)
        elif args.command == "show":
            await _show(engine, args.id, style)
        elif args.command == "send":
            payload = None
            if args.payload is not None:
                try:
                    payload = json.loads(args.payload)
                except json.JSONDecodeError as e:
                    raise CommandError(
                        f"the payload is not valid JSON: {e}; quote a string as JSON, e.g. "
                        f"'{json.dumps(args.payload)}'"
                    ) from e
            reply = await engine.send(
                args.id, args.event, payload, thread_id=args.thread, idempotency_key=args.idempotency_key
            )
            inst = await engine.get(args.id)
            if reply is None and any(item.event == args.event for item in inst.inbox):
                print(
                    f"buffered: no thread is parked on {args.event!r} yet; it is delivered once one is "
                    f"({len(inst.inbox)} event(s) in the inbox)"
                )
            else:
                print(_reply_text(reply) if reply is not None else "delivered")
            print(f"{inst.id}: {style.status(inst.status.value)}")
        elif args.command == "retry":
            return _print_outcome(await engine.retry(args.id), style)
        elif args.command == "resume":
            inst = await engine.resume(args.id)
            return _print_outcome(inst, style)
        elif args.command == "recover":
            resumed = await engine.recover()
            statuses = [_print_outcome(await engine.get(key), style) for key in resumed]
            print(f"resumed {len(resumed)} instance(s)")
            return max(statuses, default=0)  # 1 when a step of one of them failed
        elif args.command == "worker":
            await _worker(engine, args)
        elif args.command == "cancel":
            inst = await engine.cancel(args.id, reason=args.reason, compensate=args.compensate)
            print(f"{inst.id}: {style.status(inst.status.value)} ({inst.state.reason})")
    return 0


def _reply_text(reply: Any) -> str:
    """A handler's reply as JSON, as the engine keeps it for an idempotency key: a model or dataclass
    as its fields, a datetime as ISO text; what has no JSON form as its text."""
    try:
        return json.dumps(_ANY.dump_python(reply, mode="json", fallback=str))
    except ValueError:  # no JSON form even with the fallback (bytes that are not UTF-8)
        return json.dumps(reply, default=str)


async def _worker(engine: Engine, args: argparse.Namespace) -> None:
    """Run the worker until SIGTERM or SIGINT; the batch in hand is finished first."""
    print(
        f"procflow worker: polling {_describe_store(engine.store)} every {args.poll}s; "
        "stop with SIGTERM or Ctrl-C",
        file=sys.stderr,
    )
    if not args.quiet:
        if not any(isinstance(o, LoggingObserver) for o in engine.observers):
            engine.observers.append(LoggingObserver())  # the app's own observers log nothing here
        _print_transitions()
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    print(f"procflow worker: {signal.Signals(signum).name}, stopping", file=sys.stderr)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        await engine.run_worker(poll_interval=args.poll, batch=args.batch)


def _print_transitions() -> None:
    """Print each transition the engine logs (a step, a timer, an event) to stderr, with its time.

    Only when the app configured no logging of its own: then its configuration decides.
    """
    events = logging.getLogger("procflow.events")
    if logging.getLogger().handlers or events.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    events.addHandler(handler)
    events.setLevel(logging.INFO)
    events.propagate = False


async def _list(engine: Engine, args: argparse.Namespace, style: Style) -> None:
    rows = []
    async for s in engine.list(workflow=args.workflow, status=args.status):
        rows.append(
            [
                s.id,
                s.workflow,
                s.status,
                "; ".join(filter(None, (s.describe_parked(), s.error))) or "-",
                s.correlation_id or "-",
                when(s.updated_at),
            ]
        )
        if args.limit is not None and len(rows) >= args.limit:
            break
    if not rows:
        print("no instances")
        return
    print(
        render_table(
            ["ID", "WORKFLOW", "STATUS", "PARKED AT", "CORRELATION ID", "UPDATED"],
            rows,
            style,
            status_column=2,
        )
    )


async def _show(engine: Engine, key: str, style: Style) -> None:
    inst = await engine.get(key)
    print(f"{style.bold(inst.id)}  {inst.workflow}  {style.status(inst.status.value)}")
    print(_field("correlation id", inst.correlation_id or "-"))
    print(_field("version", inst.version))
    print(_field("created", when(inst.created_at)))
    print(_field("updated", when(inst.updated_at)))
    print(_field("parked at", "; ".join(str(p) for p in inst.parked) or "-"))
    print(_field("accepts", ", ".join(inst.accepts) or "-"))
    if inst.state.cancelling:
        print(_field("reason", f"{inst.state.reason} (cancel cut short: cancel or retry finishes it)"))
    elif inst.state.reason:
        print(_field("reason", inst.state.reason))
    note = retry_note(inst)
    if note:
        print(_field("retries", note))
    print(_field("completed", ", ".join(inst.state.completed) or "-"))
    data = json.loads(engine.dump_data(inst))
    print(style.bold("data"))
    print("  " + json.dumps(data, indent=2).replace("\n", "\n  "))
    print(style.bold("history"))
    rows = [
        [when(h.at), h.kind, h.name or "-", h.thread or "-", h.detail] for h in await engine.history(inst.id)
    ]
    print(render_table(["WHEN", "WHAT", "NAME", "THREAD", "DETAIL"], rows, style))


def _field(label: str, value: object) -> str:
    """A line of ``show``'s head: the label, then the value in its column, also on every line it takes."""
    return f"  {label:<16}" + str(value).replace("\n", "\n" + " " * 18)


def _print_outcome(inst: Instance[Any], style: Style) -> int:
    """Print where a run left ``inst``; the exit status: 1 when it is ``FAILED`` (a step failed), else 0."""
    note = retry_note(inst) or (f"parked at {'; '.join(str(p) for p in inst.parked)}" if inst.parked else "")
    print(f"{inst.id}: {style.status(inst.status.value)}" + (f" ({note})" if note else ""))
    return 1 if inst.failure is not None else 0


async def _instance_graph(engine: Engine, args: argparse.Namespace) -> None:
    if args.target:
        raise CommandError("graph takes a MODULE:WORKFLOW or --instance ID, not both")
    inst = await engine.get(args.instance)
    highlight = await operations.instance_highlight(engine, inst)
    operations.show_graph(operations.definition_of(inst), highlight, args.svg)


def _graph(target: str | None, svg: str | None) -> None:
    if not target:
        raise CommandError("graph needs a MODULE:WORKFLOW, or --instance ID (with --db/--app)")
    obj = _import(target, "graph")
    if isinstance(obj, type):
        obj = _sample(obj, target)
    elif callable(obj) and not hasattr(obj, "definition"):
        try:
            obj = obj()
        except Exception as e:
            raise CommandError(
                f"graph {target!r}: calling it for a workflow raised {type(e).__name__}: {e}; point graph "
                "at the workflow class, or at a function that returns one of its objects"
            ) from e
    if not callable(getattr(obj, "definition", None)):
        raise CommandError(f"{target} is not a workflow (it has no definition())")
    try:
        definition = obj.definition()
    except ProcflowError:
        raise
    except Exception as e:
        raise CommandError(
            f"{target}.definition() raised {type(e).__name__}: {e}; point graph at a module-level "
            "instance (or a function returning one) whose data the definition can use"
        ) from e
    operations.show_graph(definition, None, svg)


def _sample(cls: type[Any], target: str) -> Any:
    """An object of the workflow class ``cls`` to draw: ``cls()``, else one with zero values in its fields."""
    try:
        return cls()
    except Exception:  # a missing argument: a TypeError, or a ValidationError for a pydantic model
        pass
    try:
        return zeroed(cls)
    except Exception as e:
        raise CommandError(
            f"graph cannot make a {target} without arguments, not even with zero values in its "
            f"fields ({type(e).__name__}: {e}); point it at a module-level instance or a function "
            "returning one instead"
        ) from e


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``procflow`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    style = Style(sys.stdout)
    try:
        with _current_folder_importable():
            if args.command == "serve":
                return _serve(args)
            code = anyio.run(_run, args, style)
    except ProcflowError as e:
        print(f"procflow: {type(e).__name__}: {e}", file=sys.stderr)
        if isinstance(e, UnknownWorkflowError) and not args.app:
            print("procflow: pass --app module:engine to register your workflow classes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (procflow ... | head): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code
