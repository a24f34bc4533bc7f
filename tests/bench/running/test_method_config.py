"""The suite's default methods."""

import pytest

import autoscale_jax as asj
from autoscale_jax import search
from autoscale_jax.bench.running.chunk import resolve_options
from autoscale_jax.bench.running.method_config import (
    LAST_SHARED_LAYER,
    PHASE_ONE_VARIANTS,
    SEARCH_METHOD,
    SEARCH_VARIANTS,
    MethodConfig,
    default_methods,
    json_options,
)


def test_default_methods_cover_the_registry_and_size_phase_one():
    configs = default_methods(3, 1000)
    labels = [c.label for c in configs]
    assert labels[:15] == [
        "ew",
        "autoscale_gms",
        "autoscale_cond",
        "autoscale_loss",
        "autoscale_gms_no_restart",  # opt-in comparison rows (OPT_IN_ROWS)
        "autoscale_cond_no_restart",
        "autoscale_loss_no_restart",
        "autoscale_gms_p15",  # opt-in phase-1 variants
        "autoscale_gms_p15_imtl_g",
        "autoscale_gms_p20",
        "autoscale_gms_p20_imtl_g",
        "autoscale_gms_paper",
        "autoscale_search",
        "autoscale_search_lean",  # opt-in search within 1.3x
        "gradient_norm_scaling",
    ]
    assert len(set(labels)) == len(labels)
    for config in [*configs[1:7], configs[12]]:
        assert config.options["estimation_steps"] == 50  # 5 % of 1000
        assert config.options["metric_mask"] == "shared"
    assert default_methods(2, 100)[1].options["estimation_steps"] == 10  # >= one window
    variants = {c.label: dict(c.options) for c in configs if c.label in PHASE_ONE_VARIANTS}
    gms = dict(configs[1].options)
    imtl_g = {"explorer": "imtl_g"}
    assert variants == {
        "autoscale_gms_p15": {**gms, "estimation_steps": 150},  # 15 % of 1000
        "autoscale_gms_p15_imtl_g": {**gms, "estimation_steps": 150, **imtl_g},
        "autoscale_gms_p20": {**gms, "estimation_steps": 200},
        "autoscale_gms_p20_imtl_g": {**gms, "estimation_steps": 200, **imtl_g},
        "autoscale_gms_paper": {
            **gms,
            "estimation_steps": 200,
            **imtl_g,
            "predictor": "linear",
            "total_steps": 1000,
        },
    }
    # Every registered method runs (and the searches, not registry methods); wrappers wrap
    # Nash-MTL.
    names = {c.name for c in configs} - {SEARCH_METHOD}
    assert names | {"fixed_weights"} == set(asj.methods.available())
    # On two tasks only the methods defined there.
    two = {c.name for c in default_methods(2, 1000)} - {SEARCH_METHOD} | {"fixed_weights"}
    assert (
        set(asj.methods.available()) - two
        == {n for n in asj.methods.available() if asj.methods.info(n).min_tasks > 2}
        == {"krum", "trimmed_mean"}
    )
    registered = [c for c in configs if c.name != SEARCH_METHOD]
    wrappers = [c for c in registered if asj.methods.info(c.name).constructor == "method"]
    assert wrappers and all(c.options["method"] == "nash_mtl" for c in wrappers)
    assert "freeze(nash_mtl)" in labels


def test_options_resolve_the_last_shared_layer_and_record_as_strings():
    params = {"trunk": {"layers": {"0": {"w": 1.0}, "1": {"w": 2.0}}}, "heads": {"w": 3.0}}
    config = MethodConfig("g", "gradient_norm_scaling", {"metric_mask": LAST_SHARED_LAYER, "a": 1})
    resolved = resolve_options(config.options, params, 2)
    assert resolved["a"] == 1
    assert resolved["metric_mask"] == {
        "trunk": {"layers": {"0": {"w": False}, "1": {"w": True}}},
        "heads": {"w": False},
    }
    wrapped = resolve_options({"method": "mgda"}, params, 3)["method"]
    assert asj.task_weights(wrapped.init(None)).shape == (3,)
    assert json_options({"weights": [0.5, 1.5], "guide": "gms"}) == {
        "weights": "[0.5, 1.5]",
        "guide": "gms",
    }


def test_plain_heads_reach_exactly_the_methods_that_take_them():
    weighted = {c.label: c for c in default_methods(3, 1000)}
    plain = {c.label: c for c in default_methods(3, 1000, heads="plain")}
    assert weighted.keys() == plain.keys()
    assert all("heads" not in c.options for c in weighted.values())  # default keys unchanged
    for label, config in plain.items():
        if config.name not in asj.methods.available():
            continue  # the bench's own search method, not a registered transformation
        info = asj.methods.info(config.name)
        if info.family in ("gramian", "surgery"):
            assert config.options["heads"] == "plain", label
        if info.family == "loss" or config.name == "autoscale":
            assert "heads" not in config.options, label
    with pytest.raises(ValueError, match="heads must be"):
        default_methods(2, 100, heads="own")


def test_the_rows_follow_the_registry_metadata_not_names():
    configs = default_methods(3, 1000, heads="plain")
    by_name = {c.name: c for c in configs if c.name != SEARCH_METHOD}
    for name in asj.methods.available():
        info = asj.methods.info(name)
        if info.kind == "smto":  # every SMTO is a row of its own, the others are built above
            config = by_name[name]
            assert ("heads" in config.options) == info.takes_heads, name
            if info.constructor == "method":
                assert ("estimation_steps" in config.options) == info.estimation_phase, name
    assert {n for n in asj.methods.available() if asj.methods.info(n).kind == "fixed"} == {
        "equal_weights",
        "fixed_weights",
    }
    assert {n for n in asj.methods.available() if asj.methods.info(n).kind == "guided"} == {
        "autoscale",
        "gradient_norm_scaling",
    }
    assert by_name["freeze"].options["estimation_steps"] == 50
    assert "estimation_steps" not in by_name["cr_mogm"].options


@pytest.mark.parametrize(("num_tasks", "evaluations"), [(2, 1250), (3, 1300)])
def test_the_lean_search_costs_at_most_1_3_runs(num_tasks, evaluations):
    # Hand count, 1000 steps: phase 1 is 50 steps of K gradients; α in {1, 2, 3} train 50
    # steps, the best two 100 more (keep 0.5); the survivor's 150 are steps of the run, which
    # goes on to 1000: K * 50 + 3 * 50 + 2 * 100 + (950 - 150).
    options = {
        c.label: dict(c.options)
        for c in default_methods(num_tasks, 1000)
        if c.name == SEARCH_METHOD
    }
    lean = options["autoscale_search_lean"]
    assert set(options) == {SEARCH_METHOD, *SEARCH_VARIANTS}
    assert lean["alphas"] == (1.0, 2.0, 3.0) and lean["rungs"] == (50, 150)
    assert "refine_rungs" not in lean
    assert ("refine_rungs" in options[SEARCH_METHOD]) == (num_tasks > 2)
    phase, rungs = lean["estimation_steps"], lean["rungs"]
    searched = search.search_cost(len(lean["alphas"]), rungs, lean["keep"])
    assert num_tasks * phase + searched + (1000 - phase - rungs[-1]) == evaluations
