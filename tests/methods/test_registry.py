"""The method registry: names, look-up, options declared once and validated, building from a context."""

from __future__ import annotations

import pytest
import torch

from ogmge import methods
from ogmge.methods import BalancingMethod, BuildContext, Option, Space, register
from ogmge.methods.registry import options_table, resolve_options
from support.method_helpers import FEAT, tiny_model

BUILTIN = ("normal", "ogm", "ogm_ge", "opm", "mdrop", "multitask", "gblend", "uni_ensemble", "mmpareto",
           "anchored")


def context(names=("audio", "visual", "text"), seed=0):
    model = tiny_model(names, heads=True)
    return BuildContext(modalities=names, feature_dims={n: FEAT for n in names}, num_classes=3,
                        encoders=dict(model.encoders), heads=dict(model.heads), fusion=model.fusion, seed=seed)


def test_every_builtin_method_is_registered_in_tie_order():
    assert methods.names()[: len(BUILTIN)] == BUILTIN
    for name in BUILTIN:
        assert methods.get(name).name == name


def test_unknown_name_lists_the_registered_methods():
    with pytest.raises(ValueError, match="unknown method 'nope'.*gblend"):
        methods.get("nope")


@pytest.mark.parametrize("name", BUILTIN)
def test_every_method_builds_from_defaults(name):
    cls = methods.get(name)
    m = cls.build(context())
    assert isinstance(m, cls) and m.name == name
    defaults = resolve_options(cls)
    assert defaults == {o.name: o.default for o in cls.options}


@pytest.mark.parametrize("name", [n for n in BUILTIN if methods.get(n).options])
def test_bad_option_value_is_refused_naming_option_and_value(name):
    cls = methods.get(name)
    opt = cls.options[0]
    bad = "not-a-number" if opt.type is not str else 12345
    with pytest.raises(ValueError, match=rf"{name} option {opt.name}.*{bad}"):
        cls.build(context(), **{opt.name: bad})


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_option_is_refused_listing_the_options(name):
    with pytest.raises(ValueError, match=rf"method {name} has no option 'bogus'"):
        methods.get(name).build(context(), bogus=1)


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError, match=r"gblend option w_min must be in \[0, 1\], got 1.5"):
        methods.get("gblend").build(context(), w_min=1.5)
    with pytest.raises(ValueError, match=r"mmpareto option scale must be in \(0, inf\), got 0"):
        methods.get("mmpareto").build(context(), scale=0)
    # the 1/heads bound depends on the modalities: the constructor checks it (4 heads here)
    with pytest.raises(ValueError, match="w_min"):
        methods.get("gblend").build(context(), w_min=0.3)


def test_options_reach_the_constructed_method():
    ctx = context()
    assert methods.get("gblend").build(ctx, super_epoch=3).super_epoch == 3
    assert methods.get("mdrop").build(ctx, p=0.25).p == 0.25
    assert methods.get("anchored").build(ctx, anchor_weight=2.0).anchor_weight == 2.0
    ogm = methods.get("ogm").build(ctx, alpha=0.3, end_epoch=None)
    assert ogm.modulator.mode == "OGM" and ogm.modulator.alpha == 0.3 and ogm.modulator.end_epoch is None
    assert methods.get("ogm_ge").build(ctx).modulator.mode == "OGM_GE"


def test_integer_option_takes_an_integral_float_but_not_a_fraction():
    opt = Option("k", int, 2, "a count", low=1)
    assert opt.validate(3.0) == 3 and isinstance(opt.validate(3.0), int)
    with pytest.raises(ValueError, match="option k must be an integer, got 2.5"):
        opt.validate(2.5)
    with pytest.raises(ValueError, match="option k must be an integer, got True"):
        opt.validate(True)


def test_option_parses_command_line_text():
    assert Option("x", float, 1.0, "x").parse("2e-1") == 0.2
    assert Option("b", bool, False, "b").parse("true") is True
    assert Option("s", str, "a", "s", choices=("a", "yes")).parse("yes") == "yes"  # not YAML's True
    assert Option("e", int, 1, "e", allow_none=True).parse("null") is None


def test_option_declaration_is_checked():
    with pytest.raises(ValueError, match="default"):
        Option("x", float, -1.0, "x", low=0.0)  # the default is out of its own range
    with pytest.raises(ValueError, match="one-line help"):
        Option("x", float, 1.0, "")
    with pytest.raises(ValueError, match="low > 0"):
        Space.log_uniform(0.0, 1.0)


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="method name 'gblend' is taken by ogmge.methods.gblend:GBlending"):
        @register
        class Clash(BalancingMethod):
            name = "gblend"


def test_a_subclass_that_forgets_its_name_is_refused():
    with pytest.raises(ValueError, match="'normal' is taken"):
        @register
        class Forgot(BalancingMethod):
            pass


def test_declarations_are_checked_at_registration():
    with pytest.raises(ValueError, match="ddp_reason"):
        @register
        class NoReason(BalancingMethod):
            name = "no_reason_method"
            ddp = "refused"
    with pytest.raises(ValueError, match="cross_fit"):
        @register
        class NoCrossFit(BalancingMethod):
            name = "no_cross_fit_method"
            fits_on_validation = True


def test_qualname_round_trip():
    cls = methods.get("anchored")
    assert methods.resolve_qualname(methods.qualname(cls)) is cls
    with pytest.raises(ValueError, match="not a BalancingMethod"):
        methods.resolve_qualname("ogmge.methods.base:cross_entropy")


def test_context_seeds_are_derived_from_the_run_seed_and_component_name():
    from ogmge.seeding import component_seed

    ctx = context(seed=7)
    assert ctx.component_seed("x") == component_seed(7, "x")
    a, b = ctx.generator("x"), ctx.generator("x")
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    assert not torch.equal(torch.rand(3, generator=ctx.generator("y")), torch.rand(3, generator=ctx.generator("x")))


def test_declarations_of_the_builtins():
    get = methods.get
    assert [n for n in BUILTIN if get(n).needs_heads] == ["multitask", "gblend", "uni_ensemble", "mmpareto",
                                                          "anchored"]
    assert {n: get(n).cross_fit for n in BUILTIN if get(n).fits_on_validation} == {
        "gblend": "split", "uni_ensemble": "swap", "anchored": "swap"}
    assert get("mmpareto").ddp == "syncs" and get("mmpareto").owns_backward
    assert get("uni_ensemble").predictions == ("ensemble",) and get("anchored").predictions == ("blend",)
    assert get("ogm").paper_flags == {"modulation": "OGM", "opm": False}
    assert get("opm").paper_flags == {"modulation": "Normal", "opm": True}
    assert all(get(n).distributed_ok for n in BUILTIN)


def test_options_table_lists_every_option():
    table = options_table(methods.get("gblend"))
    for name in ("super_epoch", "w_min", "delta_o_min"):
        assert f"`{name}`" in table
