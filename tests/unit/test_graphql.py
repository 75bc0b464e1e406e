"""Phase 7 for GraphQL (authz/check/graphql.py): the scanner against graphql-core — the parser
MLflow executes GraphQL with — on the tricky cases and on generated documents, and the body rules.

The property that matters: whenever graphql-core would parse a document that holds a mutation or
subscription, the gateway never calls it a read. For documents of operations and fragments only
(what clients send) the two agree exactly.
"""

from __future__ import annotations

import json

import graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.check import routes
from authz.check.graphql import (
    GraphqlOperation,
    RequestBody,
    definitions,
    document_reads,
    reads,
)
from authz.keys import scopes

UI_QUERY = (
    "query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!)"
    ' @component(name: "MLflow.ExperimentRunTracking") { mlflowGetExperiment(input: $input)'
    " { experiment { name } } }"
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
    UI_QUERY,
]


def reference(document: str) -> list[GraphqlOperation]:
    parsed = graphql.parse(document, no_location=True)
    return [
        GraphqlOperation(d.operation.value, d.name.value if d.name else None)
        for d in parsed.definitions
        if isinstance(d, graphql.OperationDefinitionNode)
    ]


def core_reads(document: str) -> bool | None:
    """graphql-core's answer: only queries (≥ 1); None when it cannot parse the document."""
    try:
        kinds = [op.kind for op in reference(document)]
    except graphql.GraphQLError:
        return None
    return bool(kinds) and all(kind == "query" for kind in kinds)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_scanner_finds_what_graphql_core_finds(document: str) -> None:
    assert definitions(document) == reference(document)
    assert document_reads(document) == core_reads(document)


# Pieces of documents: every lexical trap of the grammar, and plain operation syntax.
EXECUTABLE = [
    "query", "mutation", "subscription", "Q", "M", "a", "b", "{", "}", "(", ")", "...F",
    "fragment F on T", "$v: In = {x: 1}", "$w: [Int] = [1, 2]", "x: 1", '"a{b"', '"}"',
    '"mutation {"', '"""x \\""" mutation { """', '"""}"""', "#c\r", "#c\n", "#c\r\n",
    "# mutation {\n", "#}\r", "\ufeff", ",", " ", "\n", "\r", "\r\n", "@d", '@d(n: "}")',
    "t(s: \"{\")", "on", "query Q { a }", "mutation M { m }", "{ a }",
]  # fmt: skip
TYPE_SYSTEM = [
    "directive @d on FIELD", "scalar S", "type T { f: Int }", "schema { query: Q }",
    "extend type T { g: Int }", '"""doc""" type U { u: Int }', "union U = A | B",
]  # fmt: skip
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def documents(pieces: list[str]) -> st.SearchStrategy[str]:
    """Soup: pieces in any order (mostly unparsable: tests the scanner never crashes or lies)."""
    joiner = st.sampled_from(["", " ", "\n", "\r", "\t", ","])
    return st.lists(st.tuples(st.sampled_from(pieces), joiner), min_size=1, max_size=14).map(
        lambda parts: "".join(piece + sep for piece, sep in parts)
    )


# Grammar: well-formed documents with every kind of trivia where trivia may go.
TRIVIA = st.sampled_from(
    [" ", "\n", "\r", "\r\n", "\t", ",", "#c\r", "# mutation { m }\r", "#}\n", "\ufeff"]
)
NAMES = st.sampled_from(["a", "b", "query", "mutation", "on", "t", "_x1"])
STRINGS = st.sampled_from(['"a{b"', '"}"', '"mutation {"', '"\\""', '"""x \\""" }"""', '""'])


def _value(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(["1", "-2.5e3", "true", "null", "ENUM", "$v"]), STRINGS)
    if depth <= 0:
        return leaf
    inner = _value(depth - 1)
    return st.one_of(
        leaf,
        st.lists(inner, max_size=3).map(lambda xs: "[" + " ".join(xs) + "]"),
        st.lists(st.tuples(NAMES, inner), max_size=2).map(
            lambda kv: "{" + " ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
    )


def _selection(depth: int) -> st.SearchStrategy[str]:
    args = st.lists(st.tuples(NAMES, _value(2)), max_size=2).map(
        lambda kv: "(" + " ".join(f"{k}: {v}" for k, v in kv) + ")" if kv else ""
    )
    child = _selection(depth - 1) if depth > 0 else st.just("")
    field = st.tuples(NAMES, args, st.one_of(st.just(""), child), TRIVIA).map(
        lambda f: f"{f[0]}{f[1]} {f[2]}{f[3]}"
    )
    spread = st.just("...F ")
    return st.lists(st.one_of(field, spread), min_size=1, max_size=3).map(
        lambda fs: "{" + " ".join(fs) + "}"
    )


OPERATION = st.tuples(
    st.sampled_from(["query", "mutation", "subscription", ""]),
    st.sampled_from(["", " Q", " query"]),  # an operation named "mutation" counts as a write
    st.sampled_from(["", "($v: In = {x: 1, y: [1]})", '($s: S = "}")']),
    st.sampled_from(["", ' @d(n: "{")', " @skip(if: true)"]),
    _selection(2),
).map(lambda o: f"{o[0]}{o[1]}{o[2]}{o[3]} {o[4]}" if o[0] else o[4])
FRAGMENT = _selection(1).map(lambda sel: f"fragment F on T {sel}")
GRAMMAR = st.lists(st.tuples(st.one_of(OPERATION, FRAGMENT), TRIVIA), min_size=1, max_size=4).map(
    lambda defs: "".join(d + t for d, t in defs)
)
GRAMMAR_WITH_TYPES = st.lists(
    st.tuples(st.one_of(OPERATION, FRAGMENT, st.sampled_from(TYPE_SYSTEM)), TRIVIA),
    min_size=1,
    max_size=4,
).map(lambda defs: "".join(d + " " + t for d, t in defs))


@FAST
@given(st.one_of(GRAMMAR, documents(EXECUTABLE)))
def test_executable_documents_read_exactly_when_graphql_core_says_so(document: str) -> None:
    expected = core_reads(document)
    if expected is not None:  # graphql-core would refuse it: MLflow executes nothing
        assert document_reads(document) == expected, repr(document)


@FAST
@given(st.one_of(GRAMMAR_WITH_TYPES, documents(EXECUTABLE + TYPE_SYSTEM)))
def test_no_document_with_a_mutation_is_called_a_read(document: str) -> None:
    if core_reads(document) is False and any(op.kind != "query" for op in reference(document)):
        assert not document_reads(document), repr(document)


def body(payload: object, content_type: str | None = "application/json") -> RequestBody:
    return RequestBody(content_type, json.dumps(payload).encode())


def test_a_query_posted_as_json_is_a_read() -> None:
    assert reads("POST", body({"query": UI_QUERY, "operationName": "MlflowGetExperimentQuery"}))
    assert reads("POST", body({"query": "{ a }"}, "application/json; charset=utf-8"))


@pytest.mark.parametrize(
    ("method", "request_body"),
    [
        ("POST", body({"query": "mutation { m }"})),
        ("POST", body({"query": "query A { a } mutation B { b }", "operationName": "A"})),
        ("POST", body({"query": "query A { a } #c\rmutation B { b }", "operationName": "B"})),
        ("POST", body([{"query": "{ a }"}])),  # a batch
        ("POST", body({"query": "{ a }"}, "text/plain")),
        ("POST", body({"query": "{ a }"}, None)),
        ("POST", body({"query": "{ a }"}, "Application/JSON")),  # MLflow refuses it too
        ("POST", body({"query": 1})),
        ("POST", body({"variables": {}})),
        ("POST", RequestBody("application/json", b"{not json")),
        ("POST", None),
        ("POST", body({"query": "{ a "})),  # unbalanced
        ("POST", body({"query": "subscription { s }"})),
        ("GET", body({"query": "{ a }"})),  # MLflow reads a GET's body too
    ],
)
def test_everything_else_is_a_write(method: str, request_body: RequestBody | None) -> None:
    assert not reads(method, request_body)


def test_the_route_scope_comes_from_the_operation() -> None:
    path = routes.GRAPHQL_PATH
    query = body({"query": UI_QUERY})
    assert routes.required_scope("POST", path, query) == scopes.MLFLOW_READ
    assert routes.required_scope("POST", path, body({"query": "mutation { m }"})) == (
        scopes.MLFLOW_WRITE
    )
    assert routes.required_scope("GET", path + "?query=%7Ba%7D") == scopes.MLFLOW_WRITE
    assert routes.required_scope("HEAD", path) == scopes.MLFLOW_WRITE
