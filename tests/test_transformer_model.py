"""The ``transformer`` architecture: shapes, causality, the scalings' meaning, init
statistics and the errors for bad options."""

import math

import pytest
import torch
from torch import nn

from resdepth import models
from resdepth.scalings import NAMED_SCALINGS

VOCAB, T, WIDTH = 11, 7, 16


def transformer(scaling="one", depth=2, **options):
    options = {"vocab_size": VOCAB, "heads": 4, **options}
    return models.build_model("transformer", (T,), 5, WIDTH, depth, scaling, **options)


def tokens(batch=3, seed=0):
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scaling", NAMED_SCALINGS + (0.2,))
@pytest.mark.parametrize("activation", models.ACTIVATIONS)
def test_logits_shape_and_tower_of_alternating_branches(scaling, activation):
    torch.manual_seed(0)
    model = transformer(scaling, depth=3, activation=activation)
    assert model(tokens()).shape == (3, 5)
    branches = model.tower.branches
    assert len(branches) == 6  # n = 2 · blocks modules, λ set by n
    assert all(isinstance(b[-1], models.CausalSelfAttention) for b in branches[::2])
    assert all(isinstance(b[-2], models.ACTIVATIONS[activation]) for b in branches[1::2])
    pre_ln = scaling == "bn"
    assert all(isinstance(b[0], nn.LayerNorm) == pre_ln for b in branches)
    assert isinstance(model.head[-2], nn.LayerNorm) == pre_ln
    if scaling in ("one", "inv_sqrt", "inv", "bn", 0.2):
        expected = {"inv_sqrt": 1 / math.sqrt(6), "inv": 1 / 6, 0.2: 0.2}.get(scaling, 1.0)
        assert torch.allclose(model.tower.scales(), torch.full((6,), expected))


def test_the_head_reads_the_last_position_and_the_model_is_causal():
    """Changing a token changes the stream at its own and later positions only; the
    logits read the last position."""
    torch.manual_seed(0)
    model = transformer("one", norm="pre_ln").double()
    ids = tokens()
    changed = ids.clone()
    changed[:, 3] = (ids[:, 3] + 1) % VOCAB
    stream, other = (model.tower(model.stem(x)) for x in (ids, changed))
    assert torch.equal(stream[:, :3], other[:, :3])
    assert (stream[:, 3:] != other[:, 3:]).all(dim=-1).all()
    torch.testing.assert_close(model(ids), model.head[-1](model.head[-2](stream[:, -1])))


def test_attention_is_the_explicit_softmax_of_the_masked_logits():
    torch.manual_seed(0)
    attention = models.CausalSelfAttention(WIDTH, 4).double()
    x = torch.randn(2, T, WIDTH, dtype=torch.float64)
    q, k, v = attention.qkv(x).chunk(3, dim=-1)
    expected = torch.empty_like(x)
    for h in range(4):
        cols = slice(4 * h, 4 * h + 4)
        for i in range(T):
            scores = torch.einsum("bc,bjc->bj", q[:, i, cols], k[:, : i + 1, cols]) / 2
            weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
            weights = weights / weights.sum(-1, keepdim=True)
            expected[:, i, cols] = torch.einsum("bj,bjc->bc", weights, v[:, : i + 1, cols])
    torch.testing.assert_close(attention(x), attention.proj(expected), rtol=1e-14, atol=1e-14)
    # a given pattern is used as it is: the frozen module
    pattern = attention.pattern(*map(attention.split_heads, (q, k)))
    torch.testing.assert_close(attention(x, pattern), attention(x), rtol=0, atol=0)


def test_skipinit_is_rezero_identity_at_init_and_learns_its_alphas():
    torch.manual_seed(0)
    model = transformer("skipinit")
    x0 = model.stem(tokens())
    assert torch.equal(model.tower(x0), x0)
    assert model.tower.alpha.requires_grad and not any(
        isinstance(m, nn.LayerNorm) for m in model.modules()
    )


def test_pre_ln_applies_to_every_scaling_when_asked():
    torch.manual_seed(0)
    model = transformer("inv_sqrt", norm="pre_ln")
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2 * 2 + 1


def test_fan_in_init_statistics():
    """N(0, 1/fan_in) Linear weights, zero biases, N(0, 1) embeddings."""
    torch.manual_seed(0)
    model = models.build_model(
        "transformer", (64,), 5, 128, 2, "one", vocab_size=200, heads=4, init="fan_in"
    )
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(1 / math.sqrt(m.in_features), rel=0.05)
            assert not m.bias.any()
        if isinstance(m, nn.Embedding):
            assert m.weight.std().item() == pytest.approx(1.0, rel=0.05)


def test_gpt2_init_statistics():
    """N(0, 0.02²) weights and embeddings; residual projections 0.02/√(2·blocks)."""
    torch.manual_seed(0)
    blocks = 8
    model = models.build_model(
        "transformer", (64,), 5, 128, blocks, "one", vocab_size=200, heads=4, init="gpt2"
    )
    branches = model.tower.branches
    projections = {id(b[-1].proj) for b in branches[::2]} | {id(b[-1]) for b in branches[1::2]}
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = 0.02 / math.sqrt(2 * blocks) if id(m) in projections else 0.02
            assert m.weight.std().item() == pytest.approx(std, rel=0.05)
        if isinstance(m, nn.Linear):
            assert not m.bias.any()
    assert len(projections) == 2 * blocks


@pytest.mark.parametrize(
    "options, scaling, match",
    [
        ({"heads": 3}, "one", "heads must be a positive divisor of the width 16"),
        ({"heads": 0}, "one", "heads"),
        ({"norm": "post_ln"}, "one", "norm must be one of"),
        ({"norm": "none"}, "bn", "scaling bn is the pre-LN transformer"),
        ({"init": "xavier"}, "one", "init must be one of"),
        ({"context": T - 1}, "one", "context must be an integer at least"),
        ({"vocab_size": None}, "one", "needs vocab_size"),
        ({"activation": "sigmoid"}, "one", "unknown activation"),
    ],
)
def test_bad_options_are_rejected_naming_the_key(options, scaling, match):
    with pytest.raises(ValueError, match=match):
        transformer(scaling, **options)


def test_inputs_that_are_not_token_sequences_are_rejected():
    with pytest.raises(ValueError, match=r"input_shape \(T,\)"):
        models.build_model("transformer", (3, 4), 5, WIDTH, 1, "one", vocab_size=VOCAB)
    model = transformer(context=T)
    with pytest.raises(ValueError, match="T <= context 7"):
        model(torch.zeros(2, T + 1, dtype=torch.long))


def test_a_longer_context_accepts_shorter_sequences():
    torch.manual_seed(0)
    model = transformer(context=2 * T)
    assert model(tokens()).shape == (3, 5)
