"""The pure protocol module: JSON in, typed commands out, and back; no sockets."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from rtvc.control import protocol as P
from rtvc.errors import ConfigError
from rtvc.params import PARAM_SPECS, integer


def one(text):
    items, batch = P.decode(text)
    assert len(items) == 1 and not batch
    return items[0]


def err(item):
    assert isinstance(item, P.Failure)
    return json.loads(item.response)["error"]


def test_requests_decode_to_typed_commands():
    c = one('{"jsonrpc":"2.0","id":7,"method":"set_params","params":{"pitch_st":3,"bypass":true}}')
    assert c == P.Call(P.SetParams({"pitch_st": 3.0, "bypass": True}), 7, False)
    assert isinstance(c.command.changes["pitch_st"], float)
    assert one('{"jsonrpc":"2.0","id":"x","method":"get_state"}') == P.Call(P.GetState(), "x")
    assert one('{"jsonrpc":"2.0","id":1,"method":"get_state","params":[]}').command == P.GetState()
    assert one('{"jsonrpc":"2.0","id":1,"method":"set_voice","params":{"name":"robot"}}').command == P.SetVoice("robot")
    assert one('{"jsonrpc":"2.0","id":1,"method":"subscribe"}').command == P.Subscribe(10.0)
    assert one('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":60}}').command == P.Subscribe(60.0)
    assert one('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"input":"USB","rate":48000}}').command \
        == P.SetDevices("USB", None, None, 48000)
    assert one('{"jsonrpc":"2.0","id":1,"method":"save_preset","params":{"name":"a-1"}}').command \
        == P.SavePreset("a-1", None)
    assert one('{"jsonrpc":"2.0","id":1,"method":"load_preset","params":{"name":"a_1"}}').command == P.LoadPreset("a_1")
    assert one('{"jsonrpc":"2.0","id":1,"method":"delete_preset","params":{"name":"b"}}').command == P.DeletePreset("b")
    n = one('{"jsonrpc":"2.0","method":"set_params","params":{"mute":true}}')
    assert n.notify and n.id is None


@pytest.mark.parametrize("cmd", [
    P.GetState(), P.SetParams({"pitch_st": -2.0, "voice": "deeper"}), P.ListVoices(), P.SetVoice("robot"),
    P.ListDevices(), P.SetDevices(2, "Speakers", None, 44100), P.ListPresets(),
    P.SavePreset("x", {"mix": 0.5}), P.LoadPreset("x"), P.DeletePreset("x"), P.Subscribe(30.0), P.Unsubscribe(),
])
def test_every_command_round_trips(cmd):
    assert one(P.command_to_request(cmd, 5)) == P.Call(cmd, 5)


@pytest.mark.parametrize("text,code,match", [
    ("{oops", P.PARSE_ERROR, r"parse error"),
    ("", P.PARSE_ERROR, r"parse error"),
    ('"just a string"', P.INVALID_REQUEST, r"invalid request 'just a string'"),
    ('{"id":1,"method":"get_state"}', P.INVALID_REQUEST, r"jsonrpc=None; expected \"2.0\""),
    ('{"jsonrpc":"2.0","id":true,"method":"get_state"}', P.INVALID_REQUEST, r"id True"),
    ('{"jsonrpc":"2.0","id":1.5,"method":"get_state"}', P.INVALID_REQUEST, r"id 1.5"),
    ('{"jsonrpc":"2.0","id":1}', P.INVALID_REQUEST, r"method=None"),
    ('{"jsonrpc":"2.0","id":1,"method":"reboot"}', P.METHOD_NOT_FOUND, r"'reboot' not found"),
    ('{"jsonrpc":"2.0","id":1,"method":"get_state","params":{"x":1}}', P.INVALID_PARAMS, r"unknown parameter\(s\) \['x'\]"),
    ('{"jsonrpc":"2.0","id":1,"method":"get_state","params":"x"}', P.INVALID_PARAMS, r"params='x'"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"pitch_st":12.5}}', P.INVALID_PARAMS,
     r"'pitch_st' = 12.5 is out of range; expected \[-12.0, 12.0\] semitones"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"mix":NaN}}', P.INVALID_PARAMS, r"'mix' = nan"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"mute":"yes"}}', P.INVALID_PARAMS, r"'mute' = 'yes'"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"voice":""}}', P.INVALID_PARAMS, r"non-empty string"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{}}', P.INVALID_PARAMS, r"empty update"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_voice","params":{}}', P.INVALID_PARAMS, r"missing parameter\(s\) \['name'\]"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_voice","params":{"name":["a"]}}', P.INVALID_PARAMS, r"name=\['a'\]"),
    ('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":0.5}}', P.INVALID_PARAMS,
     r"rate_hz = 0.5 is out of range; expected \[1.0, 60.0\] Hz"),
    ('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":true}}', P.INVALID_PARAMS,
     r"rate_hz = True: expected a number in \[1.0, 60.0\] Hz"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{}}', P.INVALID_PARAMS, r"empty call"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"rate":123}}', P.INVALID_PARAMS,
     r"rate = 123 is out of range; expected \[8000, 192000\] Hz or null"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"output":1.5}}', P.INVALID_PARAMS,
     r"output = 1.5; expected a device index \(0..2147483647\), a name substring or null"),
    # integer literals too big for a float: out of range, never an OverflowError (issue 28)
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"pitch_st":1' + "0" * 309 + '}}', P.INVALID_PARAMS,
     r"'pitch_st' = <an integer of 310 digits> is out of range; expected \[-12.0, 12.0\] semitones"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"mix":-1' + "0" * 400 + '}}', P.INVALID_PARAMS,
     r"'mix' = <a negative integer of 401 digits> is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":1' + "0" * 309 + '}}', P.INVALID_PARAMS,
     r"subscribe: rate_hz = <an integer of 310 digits> is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":1e999}}', P.INVALID_PARAMS,
     r"rate_hz = inf is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"rate":1' + "0" * 309 + '}}', P.INVALID_PARAMS,
     r"rate = <an integer of 310 digits> is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"input":1' + "0" * 309 + '}}', P.INVALID_PARAMS,
     r"input = <an integer of 310 digits>; expected a device index"),
    ('{"jsonrpc":"2.0","id":1,"method":"save_preset","params":{"name":"x","params":{"pitch_st":1' + "0" * 309
     + '}}}', P.INVALID_PARAMS, r"save_preset: parameter 'pitch_st' = <an integer of 310 digits> is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"save_preset","params":{"name":"../x"}}', P.INVALID_PARAMS,
     r"preset name '../x' is invalid"),
    ('{"jsonrpc":"2.0","id":1,"method":"save_preset","params":{"name":"x","params":{"mix":2}}}', P.INVALID_PARAMS,
     r"'mix' = 2 is out of range"),
    ('{"jsonrpc":"2.0","id":1,"method":"load_preset","params":{"name":"C:evil"}}', P.INVALID_PARAMS, r"'C:evil'"),
])
def test_bad_requests_give_the_right_code_and_name_the_value(text, code, match):
    import re

    e = err(one(text))
    assert e["code"] == code
    assert re.search(match, e["message"]), e["message"]


def test_numbers_in_any_json_form():
    """One number check for every argument: ints of any size, floats, exponents; whole-number
    floats where an integer is expected."""
    assert one('{"jsonrpc":"2.0","id":1,"method":"set_devices","params":{"input":2.0,"rate":4.8e4}}').command \
        == P.SetDevices(2, None, None, 48000)
    assert one('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"rate_hz":6E1}}').command == P.Subscribe(60.0)
    assert one('{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"pitch_st":-12}}').command \
        == P.SetParams({"pitch_st": -12.0})
    with pytest.raises(ConfigError, match=r"rate = 44100.5: expected a whole number in \[8000, 192000\] Hz"):
        integer(44100.5, what="rate", lo=8000, hi=192000, unit="Hz")


def test_a_batch_with_a_huge_integer_answers_every_call():
    huge = "1" + "0" * 309
    text = ('[{"jsonrpc":"2.0","id":1,"method":"get_state"},'
            f'{{"jsonrpc":"2.0","id":2,"method":"set_params","params":{{"pitch_st":{huge}}}}},'
            f'{{"jsonrpc":"2.0","id":3,"method":"subscribe","params":{{"rate_hz":{huge}}}}}]')
    items, batch = P.decode(text)
    assert batch and items[0] == P.Call(P.GetState(), 1)
    assert [err(i)["code"] for i in items[1:]] == [P.INVALID_PARAMS, P.INVALID_PARAMS]
    assert [json.loads(i.response)["id"] for i in items[1:]] == [2, 3]


def test_error_keeps_the_request_id_when_it_is_valid():
    f = one('{"jsonrpc":"2.0","id":"abc","method":"nope"}')
    assert json.loads(f.response)["id"] == "abc"
    f = one('{oops')
    assert json.loads(f.response)["id"] is None


def test_batches():
    items, batch = P.decode(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "get_state"},
                                        {"jsonrpc": "2.0", "id": 2, "method": "nope"}, 5]))
    assert batch and isinstance(items[0], P.Call) and err(items[1])["code"] == P.METHOD_NOT_FOUND
    assert err(items[2])["code"] == P.INVALID_REQUEST
    items, batch = P.decode("[]")
    assert not batch and err(items[0])["code"] == P.INVALID_REQUEST
    items, _ = P.decode(json.dumps([{"jsonrpc": "2.0", "id": i, "method": "get_state"} for i in range(P.MAX_BATCH + 1)]))
    assert "batch of 33 requests refused; expected at most 32" in err(items[0])["message"]
    items, batch = P.decode(json.dumps([{"jsonrpc": "2.0", "id": i, "method": "get_state"} for i in range(P.MAX_BATCH)]))
    assert batch and len(items) == P.MAX_BATCH


def test_binary_and_deeply_nested_input():
    assert "binary message of 3 bytes" in err(one(b"abc"))["message"]
    assert err(one("[" * 100_000 + "]" * 100_000))["code"] in (P.PARSE_ERROR, P.INVALID_REQUEST)


def test_encoders_produce_strict_json_rpc():
    assert json.loads(P.result(3, {"a": 1})) == {"jsonrpc": "2.0", "id": 3, "result": {"a": 1}}
    assert json.loads(P.error(None, -32600, "bad", {"x": 1})) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad", "data": {"x": 1}}}
    n = json.loads(P.notification("telemetry", {"rtf": float("nan"), "levels": [float("-inf"), 1.0]}))
    assert n == {"jsonrpc": "2.0", "method": "telemetry", "params": {"rtf": None, "levels": [None, 1.0]}}
    assert "id" not in n


def test_token_bucket_rate_and_burst():
    b = P.TokenBucket(200, 400, now=0.0)
    assert sum(b.take(0.0) for _ in range(1000)) == 400  # burst
    assert sum(b.take(1.0) for _ in range(1000)) == 200  # refilled at 200/s
    # 10 s at 1,000 requests/s: 400 + 200 * 10 accepted (the rate stated for a 10 s flood)
    b = P.TokenBucket(200, 400, now=0.0)
    ok = sum(b.take(i / 1000.0) for i in range(10_000))
    assert abs(ok - (400 + 200 * 10)) <= 2
    assert not P.TokenBucket(1, 1).take(0.0, 2)
    with pytest.raises(ConfigError, match=r"rate=0.*burst=1"):
        P.TokenBucket(0, 1)


def test_shipped_schema_matches_the_code_and_param_specs():
    shipped = json.loads(resources.files("rtvc.control").joinpath("schema.json").read_text())
    assert shipped == json.loads(json.dumps(P.build_schema()))  # regenerate: python -m rtvc.control.protocol
    params = shipped["params"]
    assert set(params) == set(PARAM_SPECS)
    for name, spec in PARAM_SPECS.items():
        d = params[name]
        assert d["type"] == {bool: "boolean", str: "string", float: "number"}[spec.kind]
        assert d.get("minimum") == spec.lo and d.get("maximum") == spec.hi
    assert set(shipped["methods"]) == set(P.COMMANDS) >= {
        "get_state", "set_params", "list_voices", "set_voice", "list_devices", "set_devices", "list_presets",
        "save_preset", "load_preset", "delete_preset", "subscribe", "unsubscribe"}
    assert shipped["methods"]["set_params"]["params"] == params
    assert shipped["protocol_version"] == P.PROTOCOL_VERSION


