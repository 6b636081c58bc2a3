"""Fuzz of the control protocol: generated messages through the server's own two steps.

The server decodes a websocket message with :func:`rtvc.control.protocol.decode` and runs each
decoded command with :meth:`rtvc.control.actions.Controller.execute`; that is the seam used
here, without sockets. Messages are generated JSON: every method with its parameters (valid,
near the bounds, of the wrong type, huge and tiny numbers, NaN, unknown keys), invalid
envelopes, batches, deep nesting. Each call must be answered with a result or a documented
JSON-RPC error code, nothing may escape, and a call answered with an error leaves the engine's
parameters as they were.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rtvc.control import protocol as P
from rtvc.control.actions import Controller
from rtvc.control.clone import CloneJobs
from rtvc.control.presets import PresetStore
from rtvc.engine import Engine, EngineConfig
from rtvc.errors import ModelError
from rtvc.params import PARAM_SPECS, Params
from tests.control.helpers import DelayRegistry

CODES = {P.PARSE_ERROR, P.INVALID_REQUEST, P.METHOD_NOT_FOUND, P.INVALID_PARAMS, P.INTERNAL_ERROR, P.RATE_LIMITED,
         P.NOT_AVAILABLE, P.VOICE_LOAD_FAILED, P.DEVICE_ERROR}
BROKEN_VOICE = "robot"


class _OneBrokenVoice(DelayRegistry):
    """Every voice a delay, except one whose model is damaged (VOICE_LOAD_FAILED answers)."""

    def make_stage(self, info, **kw):
        if info.name == BROKEN_VOICE:
            raise ModelError(f"{info.name}.onnx: sha256 mismatch")
        return super().make_stage(info, **kw)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    eng = Engine(EngineConfig(device_rate=48_000), registry=_OneBrokenVoice(), params=Params())
    eng.process(np.zeros(480, np.float32))
    clones = CloneJobs(root=tmp_path_factory.mktemp("uploads"), out_dir=tmp_path_factory.mktemp("voices"),
                       command=["false"])  # a clone that starts fails at once: nothing trains here
    return Controller(eng, presets=PresetStore(tmp_path_factory.mktemp("presets")), clones=clones,
                      selftest=lambda: {"arrived": False, "delay_ms": None})  # no sound server here


# ---------------------------------------------------------------------------- strategies
HUGE = st.sampled_from([10 ** 309, -(10 ** 309), 10 ** 4000, 2 ** 64, -(2 ** 63) - 1])
TINY = st.sampled_from([5e-324, -5e-324, 1e-300, -0.0, 1.7976931348623157e308, -1.7976931348623157e308])
NUMBERS = st.one_of(st.integers(), HUGE, TINY, st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), kids, max_size=4)),
                      max_leaves=10)
NAMES = st.sampled_from(["neutral", "deeper", "whisper", BROKEN_VOICE, "ghost", "", "nl\n", "../x", "a" * 65,
                         "preset-1", "x"])
BOUNDS = sorted({b for spec in PARAM_SPECS.values() for b in (spec.lo, spec.hi) if b is not None})
NEAR = st.one_of(  # values a careful client sends: in range, just outside, at the bounds
    st.floats(-130.0, 130.0), st.sampled_from(BOUNDS), st.integers(-20, 200_000), st.booleans(), NAMES)


def _valid(spec) -> st.SearchStrategy:
    if spec.kind is bool:
        return st.booleans()
    if spec.kind is str:
        return NAMES
    return st.one_of(st.floats(spec.lo, spec.hi), st.integers(math.ceil(spec.lo), math.floor(spec.hi)))


VALID = {name: _valid(spec) for name, spec in PARAM_SPECS.items()}  # set_params and preset parameters
VALID.update({"name": NAMES, "rate_hz": st.one_of(st.floats(P.MIN_RATE_HZ, P.MAX_RATE_HZ), st.integers(1, 60)),
              "input": st.one_of(NAMES, st.integers(0, 64)), "output": st.one_of(NAMES, st.integers(0, 64)),
              "monitor": st.one_of(NAMES, st.integers(0, 64), st.none()),
              "rate": st.sampled_from([16_000, 44_100, 48_000, 48_000.0, 12_345])})


def _named(keys: list[str]) -> st.SearchStrategy:
    """Objects of some of ``keys`` (or an unknown one): mostly valid values, else values near the
    bounds, huge or tiny numbers, or anything."""
    pair = st.sampled_from(keys + ["bogus"]).flatmap(
        lambda k: st.tuples(st.just(k), st.one_of(*[VALID.get(k, NEAR)] * 3, NEAR, HUGE, TINY, VALUES)))
    return st.lists(pair, min_size=1, max_size=3).map(dict)


def _params(method: str) -> st.SearchStrategy:
    named = _named(sorted(P.COMMANDS[method].params_schema))
    if method == "save_preset":  # its nested parameters are a partial parameter set
        named = st.fixed_dictionaries({"name": NAMES}, optional={"params": st.one_of(_named(sorted(PARAM_SPECS)),
                                                                                     VALUES)})
    return st.one_of(named, named, named, VALUES)


IDS = st.one_of(st.integers(-10, 10 ** 6), st.text(max_size=5), st.none())
BAD_IDS = st.one_of(HUGE, st.floats(), st.booleans(), st.lists(st.none(), max_size=2))


def _request(method: str) -> st.SearchStrategy:
    if not P.COMMANDS[method].params_schema:
        return st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.just(method)},
                                     optional={"id": IDS, "params": _params(method)})
    return st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.just(method), "params": _params(method)},
                                 optional={"id": IDS})


# the methods with parameters come up more often (set_params most: it takes the most)
METHODS = sorted(P.COMMANDS) + ["set_params"] * 6 + [m for m, c in P.COMMANDS.items() if c.params_schema] * 2
GOOD = st.sampled_from(METHODS).flatmap(_request)
BROKEN = st.one_of(  # a wrong envelope: version, id, method, not an object
    st.fixed_dictionaries({"jsonrpc": VALUES, "id": IDS, "method": st.sampled_from(sorted(P.COMMANDS))}),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": BAD_IDS, "method": st.sampled_from(sorted(P.COMMANDS))}),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": IDS, "method": VALUES}), VALUES)
REQUESTS = st.one_of(GOOD, GOOD, GOOD, GOOD, BROKEN)
DEEP = st.integers(1, 200_000).map(lambda n: '{"jsonrpc":"2.0","id":1,"method":"set_params","params":{"mix":'
                                   + "[" * n + "]" * n + "}}")
ONE = REQUESTS.map(lambda r: json.dumps(r))  # NaN and Infinity written as JSON's common extensions
BATCH = st.lists(REQUESTS, max_size=P.MAX_BATCH + 3).map(lambda rs: json.dumps(rs))
MESSAGES = st.one_of(ONE, BATCH, DEEP, st.text(max_size=40), st.binary(max_size=20))
CALLS = st.one_of(GOOD.map(lambda r: json.dumps(r)), st.lists(GOOD, min_size=1, max_size=P.MAX_BATCH).map(json.dumps))


# ---------------------------------------------------------------------------- the fuzz
def _error_code(text: str) -> int:
    doc = json.loads(text)
    assert doc["jsonrpc"] == "2.0" and isinstance(doc["error"]["message"], str), doc
    return doc["error"]["code"]


def _answer_every_call(ctl: Controller, message: str | bytes) -> None:
    """What the server does with one message (decode, then run each call), with its promises
    checked: a documented error code or a JSON result for each call, and on an error the
    engine's parameters are unchanged."""
    items, batch = P.decode(message)
    assert items and (batch or len(items) == 1)
    for it in items:
        if isinstance(it, P.Failure):
            assert _error_code(it.response) == it.code and it.code in CODES
            event(f"decode error {it.code}")
            continue
        assert isinstance(it, P.Call) and isinstance(it.command, P.Command)
        if isinstance(it.command, (P.Subscribe, P.Unsubscribe)):  # the connection's own: checked values only
            rate = getattr(it.command, "rate_hz", P.MIN_RATE_HZ)
            assert isinstance(rate, float) and P.MIN_RATE_HZ <= rate <= P.MAX_RATE_HZ
            event(f"{it.command.method}: decoded")
            continue
        before = ctl.engine.params
        try:
            value = ctl.execute(it.command, source="fuzz")
        except P.RpcError as e:
            assert e.code in CODES and e.message
            assert _error_code(P.error(it.id, e.code, e.message, e.data)) == e.code
            assert ctl.engine.params == before, (it.command, e.message)
            event(f"{it.command.method}: error {e.code}")
        else:
            assert "result" in json.loads(P.result(it.id, value))
            event(f"{it.command.method}: result")
        ctl.engine.process(np.zeros(480, np.float32))  # the audio side applies what was accepted
    assert Params(**ctl.engine.params.as_dict()) == ctl.engine.params  # still a valid snapshot


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@FUZZ
@given(message=MESSAGES)
def test_any_message_is_answered(ctl, message):
    """Anything at all: broken envelopes, wrong types, batches, deep nesting, text, bytes."""
    _answer_every_call(ctl, message)


@FUZZ
@given(message=CALLS)
def test_every_method_with_generated_parameters(ctl, message):
    """Well-formed calls of every method (batches too) whose parameters are generated: valid,
    at the bounds, out of range, huge, tiny, NaN, of the wrong type, unknown."""
    _answer_every_call(ctl, message)
