"""Phase 7 for GraphQL: is a request to MLflow's ``/graphql`` a read or a write?

Decided from the operation, not the method (the MLflow UI sends every query as a POST): a request
is a read only when it is a POST with ``Content-Type: application/json`` (as MLflow requires,
parameters allowed) whose body is a JSON *object* with a string ``query`` that defines at least
one operation and only ``query`` operations (or the ``{…}`` shorthand). Anything else — a
mutation or subscription anywhere in the document, a batch (JSON list), a GET, another content
type, an unbalanced or unreadable document — is a write. ``operationName`` is not consulted: a
document is a read only if every operation in it is, whichever one the server would run.

The document is scanned with GraphQL's own lexical rules, as much as finding the top-level
definitions needs (graphql-core's parser costs 0.5–1.7 ms per UI body; this scan 30–45 µs):
strings, block strings (with ``\\\"\"\"``) and ``#`` comments are skipped whole, so braces and
words inside them do not count; line terminators are ``\\n``, ``\\r\\n`` and ``\\r`` alike — a
comment ends at a bare ``\\r`` too (a scanner that runs a comment on to the next ``\\n`` would hide
a mutation that graphql-core, and so MLflow, executes); parentheses (variable defaults,
arguments) may hold object literals. ``tests/unit/test_graphql.py`` checks the scan against
graphql-core, including with generated documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

OperationKind = Literal["query", "mutation", "subscription"]
OPERATIONS = ("query", "mutation", "subscription")
JSON = "application/json"


class RequestBody(NamedTuple):
    """A request body the Check was given (only on the GraphQL route: Envoy sends it there)."""

    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class GraphqlOperation:
    """One operation definition of a GraphQL document (``name`` None when anonymous)."""

    kind: OperationKind
    name: str | None


_TOKEN = re.compile(
    r'"""(?:\\"""|[^"]|"(?!""))*"""'  # block string
    r'|"(?:\\.|[^"\\\n\r])*"'  # string
    r"|#[^\n\r]*"  # comment
    r"|[{}()]"
    r"|[_A-Za-z][_0-9A-Za-z]*"
)


def scan(document: str) -> tuple[list[GraphqlOperation], bool]:
    """The operations a document defines, in order (fragments are not operations), and whether
    the document is complete: every brace and parenthesis closed, no definition left open."""
    found: list[GraphqlOperation] = []
    depth = 0  # selection-set braces
    parens = 0  # variable definitions and arguments (may hold object literals)
    pending: list[str] = []  # words of the current definition's header
    balanced = True
    for match in _TOKEN.finditer(document):
        word = match.group()
        if word[0] in '"#':
            continue
        if word == "(":
            parens += 1
        elif word == ")":
            balanced &= parens > 0
            parens = max(parens - 1, 0)
        elif parens:
            continue
        elif word == "{":
            if depth == 0:
                _define(found, pending)
                pending = []
            depth += 1
        elif word == "}":
            balanced &= depth > 0
            depth = max(depth - 1, 0)
        elif depth == 0:
            pending.append(word)
    return found, balanced and depth == 0 and parens == 0 and not pending


def _define(found: list[GraphqlOperation], header: list[str]) -> None:
    head = header[0] if header else None
    if head in OPERATIONS:
        found.append(GraphqlOperation(head, header[1] if len(header) > 1 else None))  # type: ignore[arg-type]
    elif head is None:
        found.append(GraphqlOperation("query", None))  # the {…} shorthand
    # A definition without braces (``directive @d on FIELD``, ``scalar S``) runs on into the next
    # header: a write keyword anywhere in it counts, so nothing can hide behind one.
    for word in header[1:]:
        if word in _WRITES:
            found.append(GraphqlOperation(word, None))  # type: ignore[arg-type]
            break


_WRITES = ("mutation", "subscription")


def definitions(document: str) -> list[GraphqlOperation]:
    """The operations a document defines (what could be read of an incomplete one)."""
    return scan(document)[0]


def document_reads(document: str) -> bool:
    """Whether a document only reads: complete, ≥ 1 operation, every one a query."""
    operations, complete = scan(document)
    return complete and bool(operations) and all(op.kind == "query" for op in operations)


def reads(method: str, body: RequestBody | None) -> bool:
    """Whether a request to ``/graphql`` only reads (see the module doc)."""
    if method != "POST" or body is None or body.content_type is None:
        return False
    if body.content_type.split(";")[0] != JSON:  # MLflow's own test, exactly
        return False
    try:
        payload = json.loads(body.data)
    except (ValueError, UnicodeDecodeError):
        return False
    query = payload.get("query") if isinstance(payload, dict) else None
    return isinstance(query, str) and document_reads(query)
