"""tests/support/browser.py's pure parts: the GraphQL body parser of the request recorder (its
scanner is the gateway's own, tested in test_graphql.py) and Chromium's flags."""

from __future__ import annotations

import json
from pathlib import Path

from authz.check.graphql import GraphqlOperation
from tests.support.browser import CHROMIUM_FLAGS, chromium_args, parse_graphql_body


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
