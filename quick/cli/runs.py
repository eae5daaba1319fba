"""``quick runs ...`` and ``quick signal``: workflow runs from the command line.

The commands are registered on the main group by :mod:`quick.cli.main`. Nothing here
imports :mod:`workflow` at module level: each command imports what it uses, so
``import quick`` and ``quick --help`` stay free of the workflow layer.

Exit codes follow :mod:`quick.cli.common`: 2 for a usage mistake (a bad ``--status`` or
``--payload``), 3 when the store is unavailable, 4 when the run does not exist, and 1
when the run is not in a state the action applies to (an ended run, a step that is not
an external step waiting for a signal) or its record is corrupt (the message names the
key; the rest of the store is usable, so this is not exit 3). ``runs list`` skips a
corrupt run and names it on stderr, as ``queues`` and ``dlq list`` do.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from keyspace.protocol import Database
from quick.cli.common import (
    ID,
    LIMIT,
    NotFound,
    UsageProblem,
    echo_json,
    open_store,
    parse_payload,
    usage_problem,
    warn_skipped,
    when,
)

if TYPE_CHECKING:
    from workflow import RunView, StepView

__all__ = ["runs", "signal_step", "render_run"]

#: Step status -> (symbol, plain-ASCII fallback).
SYMBOLS = {
    "succeeded": ("✓", "+"),
    "failed": ("✗", "x"),
    "running": ("▶", ">"),
    "scheduled": ("◷", "~"),
    "waiting": ("○", "."),
    "skipped": ("↷", "-"),
    "cancelled": ("⊘", "/"),
}


@contextmanager
def _store(ctx: click.Context) -> Iterator[Database]:
    """The ``--db`` store, with a missing run reported as exit code 4."""
    from workflow import RunNotFound

    with open_store(ctx) as db:
        try:
            yield db
        except RunNotFound as error:
            raise NotFound(str(error)) from None


def _seconds(start_ms: int | None, end_ms: int | None) -> str | None:
    if start_ms is None or end_ms is None:
        return None
    return f"{max(0, end_ms - start_ms) / 1000:.2f} s"


def _unicode_ok() -> bool:
    """Whether stdout can print the status symbols (else they fall back to ASCII)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        return codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


# -- drawing a run (pure) --------------------------------------------------------------------


def _step_facts(step: StepView, run: RunView) -> list[str]:
    facts = [] if step.kind == "task" else [step.kind]
    facts.append(step.status)
    if step.attempts:
        facts.append(f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}")
    took = _seconds(step.started_ms, step.finished_ms)
    if took is not None:
        facts.append(took)
    if step.status == "scheduled" and step.due_ms is not None:
        label = "fires" if step.kind == "sleep" else "retries" if step.error else "due"
        facts.append(f"{label} {when(step.due_ms)}")
    if step.instances is not None:
        total = sum(step.instances.values())
        facts.append(f"{step.instances.get('succeeded', 0)}/{total} instances succeeded")
        facts += [
            f"{n} {status}" for status, n in sorted(step.instances.items()) if status != "succeeded"
        ]
    if step.child_run is not None:
        facts.append(f"child run {step.child_run}")
    if step.kind == "external" and step.status == "waiting":
        ready = all(run.steps[dep].status == "succeeded" for dep in step.after)
        if step.signalled:
            facts.append("signal received")
        elif ready and run.status == "running":
            facts.append("awaiting signal")
    return facts


def render_run(run: RunView, *, unicode: bool = True) -> list[str]:
    """The run as lines of text: a header, then its DAG layer by layer with each step's state.

    Each step line reads ``<symbol> <key> (<status>, <attempts>, <duration>)`` followed by
    ``after: <dependencies>``; a failed step's error and a skipped or cancelled step's reason
    follow on their own line.
    """
    from workflow.views import layers  # workflow loads only with the runs commands

    took = _seconds(run.created_ms, run.finished_ms)
    lines = [
        f"run {run.run_id}",
        f"  workflow {run.workflow}, queue {run.queue_id}, {run.status}",
        f"  started {when(run.created_ms)}"
        + (f", finished {when(run.finished_ms)} ({took})" if took else ""),
    ]
    width = max(len(key) for key in run.steps)
    for number, keys in enumerate(layers({k: s.after for k, s in run.steps.items()}), 1):
        lines.append(f"layer {number}")
        for key in keys:
            step = run.steps[key]
            symbol = SYMBOLS.get(step.status, ("?", "?"))[0 if unicode else 1]
            line = f"  {symbol} {key:<{width}} ({', '.join(_step_facts(step, run))})"
            if step.after:
                line += f"  after: {', '.join(step.after)}"
            lines.append(line)
            note = step.error if step.status in ("failed", "scheduled") else step.reason
            if note and step.status in ("failed", "scheduled", "skipped", "cancelled"):
                lines.append(f"  {' ' * (width + 2)}{'error' if step.error else 'why'}: {note}")
    counts: dict[str, int] = {}
    for step in run.steps.values():
        counts[step.status] = counts.get(step.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines.append(f"{len(run.steps)} steps: {summary}")
    return lines


def _run_json(run: RunView) -> dict[str, Any]:
    from workflow.views import layers  # workflow loads only with the runs commands

    order = layers({k: s.after for k, s in run.steps.items()})
    layer_of = {key: number for number, keys in enumerate(order, 1) for key in keys}
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "queue_id": run.queue_id,
        "input": run.input,
        "created_ms": run.created_ms,
        "finished_ms": run.finished_ms,
        "steps": [
            {
                "key": step.key,
                "layer": layer_of[step.key],
                "kind": step.kind,
                "topic": step.topic,
                "after": list(step.after),
                "status": step.status,
                "attempts": step.attempts,
                "scheduled_ms": step.scheduled_ms,
                "started_ms": step.started_ms,
                "finished_ms": step.finished_ms,
                "due_ms": step.due_ms,
                "output": step.output,
                "error": step.error,
                "reason": step.reason,
                "signalled": step.signalled,
                "instances": step.instances,
                "child_run": step.child_run,
            }
            for step in run.steps.values()
        ],
        "journal": [
            {"kind": e.kind, "at_ms": e.at_ms, "step": e.step, "details": e.details}
            for e in run.journal
        ],
    }


# -- commands --------------------------------------------------------------------------------


@click.group()
def runs() -> None:
    """Workflow runs: list, show, explain, cancel, pause, resume, retry."""


@runs.command("list")
@click.option("--workflow", type=ID, help="Only runs of this workflow.")
@click.option(
    "--status", help="Only runs in this status: running, paused, succeeded, failed, cancelled."
)
@click.option("--limit", default=100, show_default=True, type=LIMIT, help="Most runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs_list(
    ctx: click.Context, workflow: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Runs, newest first (a corrupt one is named on stderr and skipped)."""
    from workflow import RunStatus
    from workflow.views import read_runs

    if status is not None and status not in set(RunStatus):
        choices = ", ".join(RunStatus)
        raise UsageProblem(f"--status {status!r}: choose one of {choices}")
    with _store(ctx) as db:
        listing = read_runs(db, workflow=workflow, status=status, limit=limit)
    warn_skipped(listing.skipped)
    found = listing.items
    rows = [
        {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "status": run.status,
            "queue_id": run.queue_id,
            "created_ms": run.created_ms,
            "finished_ms": run.finished_ms,
        }
        for run in found
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("(no runs)")
        return
    click.echo(f"{'run':<32}  {'workflow':<20} {'status':<9}  {'queue':<16} {'started':<20} took")
    for run in found:
        took = _seconds(run.created_ms, run.finished_ms) or "-"
        click.echo(
            f"{run.run_id:<32}  {run.workflow:<20} {run.status:<9}  "
            f"{run.queue_id:<16} {when(run.created_ms):<20} {took}"
        )


@runs.command("show")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print the run, its steps and journal.")
@click.option("--ascii", "ascii_only", is_flag=True, help="Plain ASCII status symbols.")
@click.option(
    "--instances",
    "expand",
    type=ID,
    help="Expand this map step: list its instances (100 from --start).",
)
@click.option("--start", default=0, type=click.IntRange(min=0), help="First instance to list.")
@click.pass_context
def runs_show(
    ctx: click.Context, run_id: str, as_json: bool, ascii_only: bool, expand: str | None, start: int
) -> None:
    """Draw RUN_ID's steps layer by layer, each with its state.

    Each step's state has a symbol; when stdout is not UTF-8 (or with --ascii) they are
    plain ASCII: + succeeded, x failed, > running, ~ scheduled, . waiting, - skipped,
    / cancelled. A map step is one line with its instances' counts (--instances KEY
    lists them); a child step names its child run.
    """
    from workflow import inspect_instances, inspect_run

    with _store(ctx) as db:
        run = inspect_run(db, run_id)
        if expand is not None:
            if expand not in run.steps or run.steps[expand].kind != "map":
                raise UsageProblem(f"--instances {expand!r}: run {run_id} has no such map step")
            rows = inspect_instances(db, run_id, expand, start=start, limit=100)
            if as_json:
                echo_json([dataclasses.asdict(row) for row in rows])
                return
            for row in rows:
                note = row.error or json.dumps(row.output, default=str)
                click.echo(f"{row.index:>6}  {row.status:<9} {row.attempts} attempt(s)  {note}")
            return
    if as_json:
        echo_json(_run_json(run))
        return
    for line in render_run(run, unicode=not ascii_only and _unicode_ok()):
        click.echo(line)


@runs.command("explain")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs_explain(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Why RUN_ID is where it is, and what can be done next."""
    from workflow import explain_run

    with _store(ctx) as db:
        explanation = explain_run(db, run_id)
    if as_json:
        echo_json(dataclasses.asdict(explanation))
        return
    click.echo(str(explanation))


#: The commands that steer a run: name -> (workflow function, past tense, help).
STEERING = {
    "cancel": (
        "cancel_run",
        "cancelled",
        "Cancel RUN_ID: queued steps are withdrawn, running steps' results are ignored.",
    ),
    "pause": (
        "pause_run",
        "paused",
        "Start no new step of RUN_ID until it is resumed (running steps finish).",
    ),
    "resume": ("resume_run", "resumed", "Continue paused RUN_ID where it stopped."),
    "retry": (
        "retry_run",
        "retried",
        "Re-run failed RUN_ID's failed and skipped steps, keeping the succeeded ones.",
    ),
}


def _steering_command(name: str, function: str, done: str, help_text: str) -> None:
    @runs.command(name, help=help_text)
    @click.argument("run_id", type=ID)
    @click.pass_context
    def steer(ctx: click.Context, run_id: str) -> None:
        import workflow

        with _store(ctx) as db:
            getattr(workflow, function)(db, run_id)
            status = workflow.inspect_run(db, run_id).status
        click.echo(f"{done} run {run_id}: it is {status}")


for _name, (_function, _done, _help) in STEERING.items():
    _steering_command(_name, _function, _done, _help)


@click.command("signal")
@click.argument("run_id", type=ID)
@click.argument("step", type=ID)
@click.option("--payload", help="The signal's payload as JSON; it becomes the step's output.")
@click.pass_context
def signal_step(ctx: click.Context, run_id: str, step: str, payload: str | None) -> None:
    """Complete external STEP of RUN_ID (a signal sent early waits for the step)."""
    import workflow

    value = parse_payload(payload)
    with _store(ctx) as db:
        try:
            workflow.signal(db, run_id, step, value)
        except (ValueError, TypeError) as error:
            raise usage_problem(error) from None
    click.echo(f"signalled step {step!r} of run {run_id}")
