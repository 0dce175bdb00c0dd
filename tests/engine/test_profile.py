import json
import math

import pytest
from hypothesis import given, strategies as st

from sparseinfer_dse.models.identity import ModelIdentity
from sparseinfer_dse.engine.profile import FORMAT, V1_FORMAT, Profile, ProfileError, parse_alpha_list

IDENT = ModelIdentity("tiny", "sha256:abc", 4)


def test_builders():
    assert Profile.uniform(4, 1.0).levels == (1.0, 1.0, 1.0, 1.0)
    assert Profile.dense(3).levels == (None, None, None)
    assert Profile.paper(4).levels == (1.03, 1.03, 1.0, 1.0)
    assert Profile.paper(32, 1.03, 20).levels == (1.03,) * 20 + (1.0,) * 12
    with pytest.raises(ProfileError, match="first=5"):
        Profile.paper(4, first=5)


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.01, max_value=10.0)), min_size=1, max_size=40))
def test_json_round_trip(alphas):
    prof = Profile(tuple(alphas), IDENT, "p", {"ms": 1.5})
    back = Profile.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert back.levels == prof.levels and back.model == IDENT and back.metrics == {"ms": 1.5}


def test_save_load(tmp_path):
    p = Profile.paper(4, model=IDENT).save(tmp_path / "sub" / "p.json")
    assert Profile.load(p).check_model(IDENT).levels == (1.03, 1.03, 1.0, 1.0)


def _v2(**kw):
    d = {"format": FORMAT, "version": 2, "layers": [{"method": "teal", "sparsity": 0.5}]}
    d.update(kw)
    return d


def _write(tmp_path, data):
    p = tmp_path / "p.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _base(**kw):
    d = {"format": V1_FORMAT, "version": 1, "alphas": [1.0, 1.0, 1.0, 1.0], "model": IDENT.to_dict()}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "data,message",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"alphas": [1.0]}, "not a profile"),
        (_base(version=3), "unknown profile format version 3"),
        (_base(alphas="1.0"), "'alphas' must be a list"),
        (_base(alphas=[1.0, math.inf, 1.0, 1.0]), r"layer 1 alpha is inf, must be finite"),
        (_base(alphas=[1.0, 1.0, -1.0, 1.0]), r"layer 2 alpha is -1, must be > 0"),
        (_base(alphas=[1.0, 0.0, 1.0, 1.0]), r"layer 1 alpha is 0, must be > 0"),
        (_base(alphas=[103, 1.0, 1.0, 1.0]), r"layer 0 alpha is 103, out of range"),
        (_base(alphas=[1.0, "x", 1.0, 1.0]), r"layer 1 alpha must be a number"),
        (_v2(layers={"a": 1}), "'layers' must be a list"),
        (_v2(layers=[{"method": "magic", "sparsity": 0.5}]), "unknown method 'magic'"),
        (_v2(layers=[{"method": "teal", "sparsity": 1.5}]), r"layer 0 sparsity is 1.5: a teal sparsity must be in \[0, 0.99\]"),
        (_v2(layers=[{"method": "cats", "sparsity": 0.5, "thresholds": {"act": -1}}]), "thresholds.act must be"),
        (_v2(calibration=[1]), "'calibration' must be an object"),
        (_base(alphas=[]), "at least one layer"),
        (_base(num_layers=5), "num_layers is 5"),
        (_base(model={"name": "x"}), "'model' needs"),
    ],
)
def test_invalid_profiles_are_refused(tmp_path, data, message):
    with pytest.raises(ProfileError, match=message):
        Profile.load(_write(tmp_path, data))


def test_nan_refused(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"format": "%s", "version": 1, "alphas": [NaN]}' % V1_FORMAT)
    with pytest.raises(ProfileError, match="must be finite"):
        Profile.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="profile not found"):
        Profile.load(tmp_path / "nope.json")


def test_model_checks():
    prof = Profile.uniform(4, 1.0, IDENT)
    with pytest.raises(ProfileError, match="4 layers but big has 6"):
        prof.check_model(ModelIdentity("big", "sha256:abc", 6))
    other = ModelIdentity("other", "sha256:def", 4)
    with pytest.raises(ProfileError, match="--allow-model-mismatch"):
        prof.check_model(other)
    assert prof.check_model(other, allow_mismatch=True) is prof
    with pytest.raises(ProfileError, match="4 layers"):
        prof.check_model(ModelIdentity("big", "sha256:def", 6), allow_mismatch=True)


def test_parse_alpha_list():
    assert parse_alpha_list("1.0, 1.01,1.03") == [1.0, 1.01, 1.03]
    with pytest.raises(ProfileError, match="'abc' is not a number"):
        parse_alpha_list("1.0,abc")
    with pytest.raises(ProfileError, match="must be > 0"):
        parse_alpha_list("-1")


def test_v1_file_loads_as_sparseinfer_and_saves_as_v2(tmp_path):
    prof = Profile.load(_write(tmp_path, _base(alphas=[1.0, None, 1.03, 1.0])))
    assert prof.methods == ("sparseinfer",) * 4 and prof.levels == (1.0, None, 1.03, 1.0)
    d = prof.to_dict()
    assert d["format"] == FORMAT and d["version"] == 2 and d["layers"][1] == {"method": "sparseinfer", "alpha": None}


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.99)), min_size=1, max_size=12),
       st.sampled_from(["cats", "teal", "wisparse"]))
def test_v2_round_trip_with_thresholds(levels, method):
    from sparseinfer_dse.engine.methods import get_method

    projs = get_method(method).projections
    thr = tuple(None if a is None else {p: 0.1 * (i + 1) for p in projs} for i, a in enumerate(levels))
    prof = Profile(tuple(levels), IDENT, "p", {}, method).with_thresholds(thr, {"id": "cal", "tokens": 10})
    back = Profile.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert back == prof.with_metrics()  # equal field by field
    assert back.method == method and back.knob == "sparsity"


def test_mixed_methods_per_layer():
    prof = Profile((1.02, 0.5), methods=("sparseinfer", "cats"))
    assert prof.method == "mixed" and prof.knob == "level"
    back = Profile.from_dict(prof.to_dict())
    assert back.methods == ("sparseinfer", "cats") and back.to_dict()["layers"][1] == {"method": "cats", "sparsity": 0.5}
    with pytest.raises(ProfileError, match="2 levels but 3 methods"):
        Profile((1.0, 0.5), methods=("sparseinfer", "cats", "teal"))
    assert Profile.uniform(3, 0.5, method="wisparse").name == "uniform-50%"
