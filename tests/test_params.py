import dataclasses

import pytest

from rtvc.errors import ConfigError
from rtvc.params import PARAM_SPECS, Params


def test_every_field_has_a_spec_and_defaults_are_valid():
    names = {f.name for f in dataclasses.fields(Params)}
    assert names == set(PARAM_SPECS)
    p = Params()
    assert p.replace() == p


@pytest.mark.parametrize("name,value,msg", [
    ("formant_ratio", 1.5, r"'formant_ratio' = 1.5 is out of range; expected \[0.7, 1.4\]"),
    ("pitch_st", float("nan"), r"'pitch_st' = nan is out of range"),
    ("bypass", 1, r"'bypass' = 1: expected true or false"),
    ("mix", True, r"'mix' = True: expected a number"),
    ("voice", "", r"'voice' = '': expected a non-empty string"),
    ("gate_threshold_db", -200, r"expected \[-120.0, 0.0\] dBFS"),
    ("gate_floor_margin_db", 41, r"'gate_floor_margin_db' = 41 is out of range; expected \[0.0, 40.0\] dB"),
])
def test_bad_values_are_named_with_their_range(name, value, msg):
    with pytest.raises(ConfigError, match=msg):
        Params().replace(**{name: value})


def test_update_from_mapping_is_partial_and_validated():
    p = Params().update({"pitch_st": 3, "mute": True})
    assert (p.pitch_st, p.mute, p.formant_ratio) == (3.0, True, 1.0)
    assert isinstance(p.pitch_st, float)
    with pytest.raises(ConfigError, match="expected an object"):
        Params().update([("pitch_st", 1)])  # type: ignore[arg-type]
