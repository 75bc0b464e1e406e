"""The closed set of scopes (authz/keys/scopes.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.errors import InvalidInput
from authz.keys import scopes

SOME_SCOPES = st.lists(st.sampled_from(scopes.SCOPES), min_size=1)


@given(SOME_SCOPES)
def test_normalize_is_sorted_unique_and_idempotent(values: list[str]) -> None:
    result = scopes.normalize(values)
    assert list(result) == sorted(set(values))
    assert scopes.normalize(result) == result
    assert scopes.parse(",".join(values)) == result


@pytest.mark.parametrize("text", ["mlflow:delete", "admin,root", "MLFLOW:READ", ",", ""])
def test_unknown_or_empty_scopes_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        scopes.parse(text)


def test_unknown_scope_message_is_one_line_and_bounded() -> None:
    with pytest.raises(InvalidInput) as caught:
        scopes.parse("x" * 500)
    assert len(caught.value.message) < 200 and caught.value.exit_code == 2


@given(SOME_SCOPES)
def test_admin_implies_everything(wanted: list[str]) -> None:
    assert scopes.is_subset(wanted, ["admin"])


@given(SOME_SCOPES, SOME_SCOPES)
def test_subset_without_admin_is_inclusion_up_to_write_implying_read(
    wanted: list[str], held: list[str]
) -> None:
    if "admin" in held:
        return
    implied = set(held) | ({"mlflow:read"} if "mlflow:write" in held else set())
    assert scopes.is_subset(wanted, held) == set(wanted).issubset(implied)


def test_grants() -> None:
    assert scopes.grants(["mlflow:read"], "mlflow:read")
    assert scopes.grants(["mlflow:write"], "mlflow:read")  # the client reads while it logs
    assert not scopes.grants(["mlflow:read"], "mlflow:write")
    assert not scopes.grants(["keys:manage"], "mlflow:read")
    assert scopes.grants(["admin"], "keys:manage")
    assert not scopes.grants([], "mlflow:read")
