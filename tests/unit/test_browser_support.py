"""tests/support/browser.py's pure parts: the GraphQL operation scanner and body parser.

The scanner must find the same operations as graphql-core (the library MLflow executes GraphQL
with), especially where a naive scanner would hide one: a comment ended by a bare carriage return,
braces inside strings and block strings, object literals in variable defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.browser import (
    CHROMIUM_FLAGS,
    GraphqlOperation,
    chromium_args,
    graphql_definitions,
    parse_graphql_body,
)

DOCUMENTS = [
    "{ test { output } }",
    "query Q { test { output } }",
    'mutation M { testMutation(inputString: "x") { output } }',
    "query A { a } #c\rmutation B { b }",
    "query A { a } #c\r\nmutation B { b }",
    'query Q @component(name: "a{b") { t(s: "}") { o } } mutation X { t }',
    'query Q { t(s: """ a \\""" mutation { """) { o } }',
    "mutation M($a: In = {x: 1, y: {z: 2}}) { t(a: $a) { o } }",
    "fragment F on T { a } query Q { ...F }",
    "\ufeff,query,Q,{a}",
    "subscription S { s }",
    "query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!)"
    ' @component(name: "MLflow.ExperimentRunTracking") { mlflowGetExperiment(input: $input)'
    " { experiment { name } } }",
]


def reference(document: str) -> list[GraphqlOperation]:
    graphql = pytest.importorskip("graphql")
    parsed = graphql.parse(document, no_location=True)
    return [
        GraphqlOperation(d.operation.value, d.name.value if d.name else None)
        for d in parsed.definitions
        if isinstance(d, graphql.OperationDefinitionNode)
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_scanner_finds_what_graphql_core_finds(document: str) -> None:
    assert graphql_definitions(document) == reference(document)


def test_body_shapes() -> None:
    body = json.dumps(
        {"query": "query A { a } mutation B { b }", "operationName": "B", "variables": {"x": 1}}
    )
    [request] = parse_graphql_body(body)
    assert request.operation_name == "B"
    assert request.selected == GraphqlOperation("mutation", "B")
    assert request.variables == ("x",)
    # Several operations and no operationName: a server runs none of them.
    [ambiguous] = parse_graphql_body(json.dumps({"query": "query A { a } query B { b }"}))
    assert ambiguous.selected is None
    # A JSON list is a batch (MLflow answers it with a 500); a GET carries the query string.
    assert len(parse_graphql_body('[{"query": "{ a }"}, {"query": "{ b }"}]')) == 2
    [get] = parse_graphql_body(None, "query=%7B+a+%7D")
    assert get.selected == GraphqlOperation("query", None)
    assert parse_graphql_body("not json") == []


def test_chromium_flags_pin_a_ca(tmp_path: Path) -> None:
    from cli.tls import ensure_certificates

    certs = ensure_certificates(tmp_path / "tls")
    args = chromium_args(certs.ca_cert, ["--lang=en"])
    assert args[: len(CHROMIUM_FLAGS)] == list(CHROMIUM_FLAGS)
    pin = args[len(CHROMIUM_FLAGS)]
    assert pin.startswith("--ignore-certificate-errors-spki-list=") and pin.endswith("=")
    assert args[-1] == "--lang=en"
