"""The legend of stored records (``keyspace.layout``): one meaning per field name, and
every record the source writes uses only names from it."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from keyspace import layout
from keyspace.codec import unpack_value
from keyspace.layout import FIELDS, RECORDS
from quick.jobs import Job, JobState
from quick.progress import Progress
from quick.records import tombstone
from workflow.definition import StepKind, StepSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("keyspace", "quick", "workflow", "consumer", "scripts", "tests")

#: ``pack_value`` literals that are not stored records: the codec's own tests.
NOT_RECORDS = {("tests/unit/test_layout.py", "when")}

#: Modules that read and write records, scanned more closely: every string used as a
#: dict-literal key, a subscript, a ``get``/``setdefault``/``pop`` argument, an
#: ``update`` keyword or the left side of ``in`` must be a legend name, or one of the
#: module's names listed here (which are not record fields).
RECORD_MODULES: dict[str, set[str]] = {
    "quick/jobs.py": set(),
    "quick/records.py": set(),
    "quick/pointers.py": set(),
    "quick/queue_leases.py": set(),
    "quick/claiming.py": set(),
    "quick/limits.py": set(),
    "quick/limit_values.py": set(),
    "quick/key_limits.py": set(),
    "quick/throughput.py": set(),
    "quick/fencing.py": set(),
    "quick/extensions.py": set(),
    "quick/operations.py": set(),
    "quick/cron.py": {"next_ms"},
    "quick/enqueueing.py": {"payload", "queue_id", "topic"},
    # A callback's payload (counts by outcome, long names) and a member's enqueue arguments.
    "quick/batches.py": {
        "batch_id",
        "counts",
        "payload",
        "queue_id",
        "topic",
        "priority",
        "max_attempts",
        "total",
        "left",
        "pending",
        "completed",
        "discarded",
        "dead",
        "cancelled",
    },
    "quick/dependencies.py": set(),
    "quick/followers.py": {"batch_id", "counts", "payload", "pending", "left"},
    "quick/flow.py": set(),
    "quick/migration.py": set(),
    "quick/migration_jobs.py": set(),
    "quick/migration_records.py": set(),
    "quick/migration_dead.py": set(),
    "quick/migration_lease.py": set(),
    "quick/migration_queues.py": set(),
    "quick/migration_tombstones.py": set(),
    "quick/inspection.py": {"r", "queue", "next_visible_ms", "empty_since_ms", "counts"},
    "quick/checking.py": {
        "job_id",
        "key",
        "what",
        "kind",
        "detail",
        "repaired",
        "queue",
        "state",
        "name",
    },
    "workflow/definition.py": set(),
    "workflow/engine.py": set(),
    "workflow/hook_jobs.py": set(),
    "workflow/items.py": set(),
    "workflow/starting.py": set(),
    "workflow/steering.py": set(),
    "workflow/steps.py": {"index"},
    "workflow/mapping.py": set(),
    "workflow/children.py": set(),
    "workflow/records.py": set(),
    "workflow/views.py": {"waiting", "succeeded"},  # instance counts by status
    # A journal event's details (``det``) are keyword arguments with long names.
    "workflow/journal.py": {"due_ms", "output", "error", "retry_at_ms", "steps", "reason"},
}


def _python_files() -> list[pathlib.Path]:
    return sorted(path for top in SOURCES for path in (ROOT / top).rglob("*.py"))


def _text(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_pack_value(node: ast.Call) -> bool:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    return name == "pack_value"


def _literal_dict(tree: ast.Module, name: str) -> ast.Dict:
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
            and isinstance(node.value, ast.Dict)
        ):
            return node.value
    raise AssertionError(f"{name} is not a dict literal in keyspace/layout.py")


def test_the_legend_gives_each_name_one_meaning() -> None:
    tree = ast.parse((ROOT / "keyspace/layout.py").read_text())
    names = [_text(key) for key in _literal_dict(tree, "FIELDS").keys]
    assert all(name is not None for name in names)
    duplicated = {name for name in names if names.count(name) > 1}
    assert not duplicated, f"listed more than once (two meanings): {duplicated}"
    meanings = list(FIELDS.values())
    assert len(set(meanings)) == len(meanings), "two names share one meaning's text"
    for name in FIELDS:
        assert 1 <= len(name) <= 3, name
        assert name.isascii(), name
        assert name.isalpha(), name
        assert name.islower(), name


def test_every_record_kind_lists_legend_names_and_every_name_is_used() -> None:
    used: set[str] = set()
    for kind, fields in RECORDS.items():
        assert len(set(fields)) == len(fields), f"{kind} lists a field twice"
        unknown = set(fields) - set(FIELDS)
        assert not unknown, f"{kind} uses names missing from FIELDS: {unknown}"
        used.update(fields)
    assert set(FIELDS) == used, f"in FIELDS but no record uses them: {set(FIELDS) - used}"


def _tables(doc: str) -> dict[str, list[list[str]]]:
    """The docstring's simple reST tables by the first header, each row's cells joined
    over its continuation lines."""
    lines = doc.splitlines()
    tables: dict[str, list[list[str]]] = {}
    i = 0
    while i < len(lines):
        if not re.fullmatch(r"=+( +=+)+", lines[i]):
            i += 1
            continue
        spans = [match.span() for match in re.finditer(r"=+", lines[i])]

        def cells(line: str, spans: list[tuple[int, int]] = spans) -> list[str]:
            ends = [begin for begin, _ in spans[1:]] + [len(line)]
            return [line[begin:end].strip() for (begin, _), end in zip(spans, ends, strict=True)]

        header = cells(lines[i + 1])[0]
        rows: list[list[str]] = []
        i += 3
        while not re.fullmatch(r"=+( +=+)+", lines[i]):
            row = cells(lines[i])
            if row[0] or not rows:
                rows.append(row)
            else:
                rows[-1] = [
                    " ".join(filter(None, pair)) for pair in zip(rows[-1], row, strict=True)
                ]
            i += 1
        tables[header] = rows
        i += 1
    return tables


def test_the_docstring_tables_match_the_code_form() -> None:
    tables = _tables(layout.__doc__ or "")
    names = {row[0]: row[1:] for row in tables["name"]}
    expected = {
        f"``{name}``": [meaning, ", ".join(k for k, f in RECORDS.items() if name in f)]
        for name, meaning in FIELDS.items()
    }
    assert names == expected
    kinds = {row[0]: row[1] for row in tables["record"]}
    assert kinds == {kind: " ".join(fields) for kind, fields in RECORDS.items()}


def test_every_pack_value_literal_uses_legend_names() -> None:
    scanned = 0
    wrong = []
    for path in _python_files():
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if not (isinstance(node, ast.Call) and _is_pack_value(node) and node.args):
                continue
            value = node.args[0]
            if not isinstance(value, ast.Dict):
                continue
            scanned += 1
            for key in value.keys:
                name = _text(key)
                if name is not None and name not in FIELDS and (where, name) not in NOT_RECORDS:
                    wrong.append(f"{where}:{node.lineno}: {name!r}")
    assert scanned >= 15, f"only {scanned} pack_value literals found: is the scan broken?"
    assert not wrong, "record fields missing from the legend:\n" + "\n".join(wrong)


def _names_used(tree: ast.AST) -> list[tuple[int, str]]:
    out: list[tuple[int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            out += [(node.lineno, _text(key)) for key in node.keys]
        elif isinstance(node, ast.Subscript):
            out.append((node.lineno, _text(node.slice)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "setdefault", "pop") and node.args:
                out.append((node.lineno, _text(node.args[0])))
            elif node.func.attr == "update":
                out += [(node.lineno, kw.arg) for kw in node.keywords]
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            out.append((node.lineno, _text(node.left)))
    return [(line, name) for line, name in out if name is not None]


@pytest.mark.parametrize("module", sorted(RECORD_MODULES))
def test_record_modules_read_and_write_only_legend_names(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(), filename=module)
    allowed = set(FIELDS) | RECORD_MODULES[module]
    wrong = [
        f"{module}:{line}: {name!r}" for line, name in _names_used(tree) if name not in allowed
    ]
    assert not wrong, "names that are not in the legend:\n" + "\n".join(wrong)


def test_records_written_by_the_code_have_the_legend_fields() -> None:
    job = Job(
        id="j", queue="q", topic="t", payload=None, priority=1, vis_ms=0, state=JobState.READY
    )
    optional = ("lk", "tc", "b", "dn", "cx", "pg")  # stored only when set
    assert tuple(unpack_value(job.to_value())) == RECORDS["job"][: -len(optional)]
    full = job.evolve(
        limit_keys=("k",),
        trace={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
        batch="b1",
        has_dependents=True,
        cancel_requested=True,
        progress=Progress(fraction=0.5, text="half"),
    )
    assert tuple(unpack_value(full.to_value())) == RECORDS["job"]
    assert tuple(unpack_value(tombstone("q", "completed", 1, "token"))) == RECORDS["directory"]
    spec = StepSpec(
        key="a",
        kind=StepKind.CHILD,
        topic="t",
        over="o",
        branches={"b": ("c",)},
        child="kid",
        child_definition=[],
        queue="q",
    )
    assert tuple(spec.to_record()) == RECORDS["step def"]
