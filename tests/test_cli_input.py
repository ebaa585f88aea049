"""The terminal client's parsing of what a person types: pure code, no cluster."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
from hypothesis import given

import ordo
from ordo import cli

GOOD = {
    "when": [{"key": "acct:1", "target": "int_value", "op": ">=", "value": 10},
             {"key": "acct:3", "target": "exists", "value": False},
             {"key": "acct:4", "target": "exists"}],
    "then": [{"op": "add", "key": "acct:1", "value": -10},
             {"op": "append", "key": "log", "value": "x"},
             {"op": "put", "key": "b", "value": {"bytes": "aGk="}},
             {"op": "put", "key": "l", "value": [1, "a"]},
             {"op": "range", "key": "doc:{1}:", "limit": 5},
             {"op": "get", "key": "acct:1"}],
    "otherwise": [{"op": "delete", "key": "acct:2"}],
}


def test_a_good_document_becomes_the_same_transaction_as_the_api_builds() -> None:
    spec = cli._txn_from_json(json.dumps(GOOD))
    assert spec == {
        "when": [ordo.int_value("acct:1") >= 10, ordo.exists("acct:3") == False,  # noqa: E712
                 ordo.exists("acct:4") == True],  # noqa: E712
        "then": [ordo.add("acct:1", -10), ordo.append("log", "x"), ordo.put("b", b"hi"),
                 ordo.put("l", [1, "a"]), ordo.range("doc:{1}:", 5), ordo.get("acct:1")],
        "otherwise": [ordo.delete("acct:2")],
    }


@pytest.mark.parametrize(("document", "message"), [
    ("{bad", "not JSON"),
    ("[1]", "the transaction: expected an object"),
    ('{"then": [], "thn": []}', "unknown field 'thn'"),
    ('{"then": {"op": "get", "key": "a"}}', "'then' must be a list"),
    ('{"then": [{"put": {"key": "a"}}]}', "then[0]: missing 'op'"),
    ('{"then": [{"op": "frob", "key": "a"}]}', "then[0]: unknown op 'frob'"),
    ('{"then": [{"op": "put", "key": "a"}]}', "then[0]: missing 'value'"),
    ('{"then": [{"op": "get", "key": "a", "value": 1}]}', "then[0]: unknown field 'value'"),
    ('{"then": [{"op": "put", "key": 5, "value": 1}]}', "then[0]: the key must be a string"),
    ('{"then": [{"op": "put", "key": "a", "value": 1.5}]}', "then[0]: not an ordo value: 1.5"),
    ('{"then": [{"op": "put", "key": "a", "value": true}]}', "then[0]: not an ordo value"),
    ('{"then": [{"op": "put", "key": "a", "value": {"bytes": "!!"}}]}', "not base64"),
    ('{"then": [{"op": "add", "key": "a", "value": "x"}]}', "then[0]: add takes an int"),
    ('{"then": [{"op": "range", "key": "a", "limit": -1}]}', "limit must be an integer"),
    ('{"otherwise": [{"op": "get"}]}', "otherwise[0]: missing 'key'"),
    ('{"when": [{"key": "a", "op": "~", "value": 1}]}', "when[0]: unknown operator '~'"),
    ('{"when": [{"key": "a", "target": "size", "value": 1}]}', "unknown target 'size'"),
    ('{"when": [{"key": "a", "op": ">="}]}', "when[0]: missing 'value'"),
    ('{"when": [{"key": "a", "target": "exists", "op": "<"}]}', "exists compares with ="),
    ('{"when": [{"key": "a", "target": "exists", "value": 1}]}', "exists compares with ="),
    ('{"then": [{"op": ["put"], "key": "a", "value": 1}]}', "then[0]: unknown op"),
    ('{"when": [{"key": "a", "op": [1], "value": 1}]}', "when[0]: unknown operator"),
    ('{"when": [{"key": "a", "target": {"x": 1}, "value": 1}]}', "when[0]: unknown target"),
])
def test_a_bad_document_names_the_part_at_fault(document: str, message: str) -> None:
    with pytest.raises(cli.UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cli._txn_from_json(document)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["when", "then", "otherwise", "op", "key", "value",
                                       "target", "limit", "bytes", "x"]), children, max_size=4),
    max_leaves=12,
))
def test_any_json_is_a_transaction_or_a_usage_error(doc: object) -> None:
    _parses_or_says_why(doc)


_VALID_LEAF = st.integers() | st.text(max_size=5)
_JSON = st.recursive(
    # Mostly what ordo takes, so that lists of them get through too.
    _VALID_LEAF | _VALID_LEAF | _VALID_LEAF | st.none() | st.booleans() | st.floats(),
    lambda children: st.lists(children, max_size=3) | st.fixed_dictionaries({"bytes": children}),
    max_leaves=8,
)


@given(st.fixed_dictionaries({
    "when": st.lists(st.fixed_dictionaries(
        {"key": st.text(max_size=3), "value": _JSON},
        optional={"target": st.sampled_from(["value", "int_value", "version", "exists", "x"])
                  | _JSON,
                  "op": st.sampled_from([*cli._OPERATORS, "~"]) | _JSON}), max_size=2),
    "then": st.lists(st.fixed_dictionaries(
        {"op": st.sampled_from([*cli._OP_FIELDS, "x"]) | _JSON, "key": st.text(max_size=3)},
        optional={"value": _JSON, "limit": _JSON}), max_size=2),
}))
def test_a_well_shaped_document_with_any_values_parses_or_says_why(doc: object) -> None:
    _parses_or_says_why(doc)


def _parses_or_says_why(doc: object) -> None:
    try:
        spec = cli._txn_from_json(json.dumps(doc))
    except cli.UsageError as error:
        assert str(error)
    else:
        assert set(spec) == {"when", "then", "otherwise"}


@pytest.mark.parametrize(("text", "kind"), [("abc", "int"), ("1.5", "int"), ("{", "json"),
                                             ("1.5", "json"), ("true", "json")])
def test_a_bad_put_value_is_a_usage_error(text: str, kind: str) -> None:
    with pytest.raises(cli.UsageError, match=f"not a value of type {kind}"):
        cli._parse_value(text, kind)


def test_usage_errors_exit_2_with_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing is listening on port 1: a parse error must come before any dial.
    assert cli.main(["txn", "--address", "127.0.0.1:1", '{"then": [{"op": "frob"}]}']) == 2
    assert cli.main(["put", "--address", "127.0.0.1:1", "k", "x", "--type", "int"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ordo txn: then[0]: unknown op 'frob'")
    assert err[1].startswith("ordo put: not a value of type int: 'x'")
    assert len(err) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["history", "k", "--from", "-5"], "argument --from: -5 is less than 0"),
    (["history", "k", "--limit", "x"], "argument --limit: not an integer: 'x'"),
    (["get", "k", "--min-position", "-1"], "argument --min-position: -1 is less than 0"),
    (["get", "k", "--at", "0"], "argument --at: 0 is less than 1"),
    (["watch", "p", "--from", "-1"], "argument --from: -1 is less than 0"),
    (["watch", "p", "--count", "-2"], "argument --count: -2 is less than 0"),
])
def test_a_negative_position_or_count_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--address", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
