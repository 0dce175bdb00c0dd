import json
import math

import pytest
from hypothesis import given, strategies as st

from sparseinfer_dse.models.identity import ModelIdentity
from sparseinfer_dse.engine.profile import FORMAT, AlphaProfile, ProfileError, parse_alpha_list

IDENT = ModelIdentity("tiny", "sha256:abc", 4)


def test_builders():
    assert AlphaProfile.uniform(4, 1.0).alphas == (1.0, 1.0, 1.0, 1.0)
    assert AlphaProfile.dense(3).alphas == (None, None, None)
    assert AlphaProfile.paper(4).alphas == (1.03, 1.03, 1.0, 1.0)
    assert AlphaProfile.paper(32, 1.03, 20).alphas == (1.03,) * 20 + (1.0,) * 12
    with pytest.raises(ProfileError, match="first=5"):
        AlphaProfile.paper(4, first=5)


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.01, max_value=10.0)), min_size=1, max_size=40))
def test_json_round_trip(alphas):
    prof = AlphaProfile(tuple(alphas), IDENT, "p", {"ms": 1.5})
    back = AlphaProfile.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert back.alphas == prof.alphas and back.model == IDENT and back.metrics == {"ms": 1.5}


def test_save_load(tmp_path):
    p = AlphaProfile.paper(4, model=IDENT).save(tmp_path / "sub" / "p.json")
    assert AlphaProfile.load(p).check_model(IDENT).alphas == (1.03, 1.03, 1.0, 1.0)


def _write(tmp_path, data):
    p = tmp_path / "p.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _base(**kw):
    d = {"format": FORMAT, "version": 1, "alphas": [1.0, 1.0, 1.0, 1.0], "model": IDENT.to_dict()}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "data,message",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"alphas": [1.0]}, "not an alpha profile"),
        (_base(version=2), "unknown profile format version 2"),
        (_base(alphas="1.0"), "'alphas' must be a list"),
        (_base(alphas=[1.0, math.inf, 1.0, 1.0]), r"alphas\[1\] is inf, must be finite"),
        (_base(alphas=[1.0, 1.0, -1.0, 1.0]), r"alphas\[2\] is -1, must be > 0"),
        (_base(alphas=[1.0, 0.0, 1.0, 1.0]), r"alphas\[1\] is 0, must be > 0"),
        (_base(alphas=[103, 1.0, 1.0, 1.0]), r"alphas\[0\] is 103, out of range"),
        (_base(alphas=[1.0, "x", 1.0, 1.0]), r"alphas\[1\] must be a number"),
        (_base(alphas=[]), "at least one layer"),
        (_base(num_layers=5), "num_layers is 5"),
        (_base(model={"name": "x"}), "'model' needs"),
    ],
)
def test_invalid_profiles_are_refused(tmp_path, data, message):
    with pytest.raises(ProfileError, match=message):
        AlphaProfile.load(_write(tmp_path, data))


def test_nan_refused(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"format": "%s", "version": 1, "alphas": [NaN]}' % FORMAT)
    with pytest.raises(ProfileError, match="must be finite"):
        AlphaProfile.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="profile not found"):
        AlphaProfile.load(tmp_path / "nope.json")


def test_model_checks():
    prof = AlphaProfile.uniform(4, 1.0, IDENT)
    with pytest.raises(ProfileError, match="4 alphas but big has 6"):
        prof.check_model(ModelIdentity("big", "sha256:abc", 6))
    other = ModelIdentity("other", "sha256:def", 4)
    with pytest.raises(ProfileError, match="--allow-model-mismatch"):
        prof.check_model(other)
    assert prof.check_model(other, allow_mismatch=True) is prof
    with pytest.raises(ProfileError, match="4 alphas"):
        prof.check_model(ModelIdentity("big", "sha256:def", 6), allow_mismatch=True)


def test_parse_alpha_list():
    assert parse_alpha_list("1.0, 1.01,1.03") == [1.0, 1.01, 1.03]
    with pytest.raises(ProfileError, match="'abc' is not a number"):
        parse_alpha_list("1.0,abc")
    with pytest.raises(ProfileError, match="must be > 0"):
        parse_alpha_list("-1")
