"""The in-flight engine's batching: rows join a running batch, finished rows leave, seeds hold."""

from __future__ import annotations

from functools import partial

from s1 import BudgetForcing, Sampling, generate
from s1.engines.base import make_request, to_completion
from s1.engines.hf import HFEngine

QUESTIONS = ["What is 7*8?", "Name three colours.", "Explain gravity to a child in two sentences.", "Hi"]


def test_requests_joining_a_running_batch_get_the_same_tokens_as_alone(tiny):
    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=60, num_ignore=2, max_answer_tokens=10)
    alone = [generate(q, engine, forcing)[0].output_token_ids for q in QUESTIONS]

    requests = [
        make_request(engine.tokenizer, engine.format_tokens, engine.context_length, q, forcing, Sampling())
        for q in QUESTIONS
    ]
    loop = engine.loop(max_batch=8)
    loop.add(0, requests[0])
    loop.add(1, requests[1])
    results, sizes, step = {}, [], 0
    while loop.busy:
        if step == 7:
            loop.add(2, requests[2])  # joins while 0 and 1 are mid-thought
        if step == 19:
            loop.add(3, requests[3])
        for i, request, state, _row in loop.step():
            results[i] = to_completion(request, state, engine.tokenizer, engine.fmt).output_token_ids
        sizes.append(len(loop.rows))
        step += 1
    assert [results[i] for i in range(4)] == alone
    assert max(sizes) >= 3, "requests never ran together"
    assert sizes[-1] == 0


def test_finished_rows_stop_costing_compute(tiny):
    engine = HFEngine(*tiny)
    short = BudgetForcing(max_thinking_tokens=3, max_answer_tokens=2)
    long = BudgetForcing(max_thinking_tokens=80, max_answer_tokens=2)
    loop = engine.loop(max_batch=4)
    for i, forcing in enumerate([short, long]):
        loop.add(
            i,
            make_request(
                engine.tokenizer, engine.format_tokens, engine.context_length, QUESTIONS[i], forcing, Sampling()
            ),
        )
    widths = []
    while loop.busy:
        loop.step()
        if loop.rows:
            widths.append(len(loop.runtime.rows))
    assert widths[0] == 2 and widths[-1] == 1


def test_cancelled_request_frees_its_slot(tiny):
    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=50, max_answer_tokens=5)
    loop = engine.loop(max_batch=2)
    for i, q in enumerate(QUESTIONS[:3]):
        loop.add(i, make_request(engine.tokenizer, engine.format_tokens, engine.context_length, q, forcing, Sampling()))
    loop.step()
    assert len(loop.rows) == 2 and len(loop.waiting) == 1
    assert loop.cancel(0)
    loop.step()
    assert sorted(r.index for r in loop.rows) == [1, 2]


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(tiny):
    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=30, max_answer_tokens=5)
    sampling = Sampling(temperature=1.0, top_p=0.9, seed=123)
    alone = generate(QUESTIONS[0], engine, forcing, sampling)[0].output_token_ids
    batched = generate(QUESTIONS, engine, forcing, sampling)[0].output_token_ids
    assert alone == batched
    other = generate(QUESTIONS[0], engine, forcing, Sampling(temperature=1.0, seed=7))[0].output_token_ids
    greedy = generate(QUESTIONS[0], engine, forcing)[0].output_token_ids
    assert alone != other, "another seed drew the very same tokens"
    assert alone != greedy, "sampling at temperature 1 gave the greedy tokens"


def test_completion_splits_thinking_from_answer(embedded):
    [c] = generate(
        "What is 7*8?", HFEngine(*embedded), BudgetForcing(max_thinking_tokens=12, num_ignore=5, max_answer_tokens=20)
    )
    assert c.capped
    assert c.answer.startswith("Final Answer:")
    assert "<|im_start|>answer" not in c.thinking
    assert len(c.output_token_ids) >= c.thinking_tokens + c.answer_tokens
    assert c.prompt.endswith("<|im_start|>assistant\n<|im_start|>think")


def test_a_request_that_breaks_the_shared_step_fails_alone(tiny):
    """Past the server's validation, an exception in one request's prefill or sampling fails that request
    only: the others in the same batch finish with exactly the tokens they get alone."""
    from dataclasses import replace as dc_replace

    from s1 import BudgetForcing, Sampling
    from s1.core.formats import render_prompt
    from s1.engines.base import prepare
    from s1.engines.hf import HFEngine

    engine = HFEngine(*tiny)
    forcing = BudgetForcing(max_thinking_tokens=12, max_answer_tokens=4)

    def request(q, sampling=Sampling()):
        prompt = render_prompt(engine.tokenizer, q, engine.fmt)
        return prepare(engine.tokenizer, engine.format_tokens, engine.context_length, prompt, forcing, sampling)

    good = [request(f"question {i}") for i in range(3)]
    out_of_vocab = dc_replace(good[0], prompt_token_ids=good[0].prompt_token_ids + [10**7])
    nan_sampling = Sampling(temperature=1.0, seed=1)
    object.__setattr__(nan_sampling, "temperature", float("nan"))  # what no validated request can carry
    bad_draw = request("question x", nan_sampling)
    loop = engine.loop(max_batch=8)
    for i, r in enumerate([good[0], out_of_vocab, good[1], bad_draw, good[2]]):
        loop.add(i, r)
    finished = {}
    while loop.busy:
        for i, _, state, _ in loop.step():
            finished[i] = state.output
    failed = {i for i, _ in loop.failed}
    assert failed == {1, 3}
    alone = engine.generate(good)
    assert [finished[0], finished[2], finished[4]] == [c.output_token_ids for c in alone]


def test_sliding_window_models_are_refused_by_hf_and_run_by_reprefill(embedded):
    """A cache that keeps only a window cannot be spliced: the hf engine refuses it by name, and the
    reference engine (plain transformers.generate) runs the same tiny random Mistral-with-window."""
    import pytest
    from transformers import AutoModelForCausalLM, MistralConfig

    from s1 import BudgetForcing, UserError, generate
    from s1.engines.hf import HFEngine
    from s1.engines.reprefill import ReprefillEngine

    tokenizer = embedded[1]
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=16,
        max_position_embeddings=512,
    )
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UserError, match="sliding window.*--engine reprefill"):
        HFEngine(model, tokenizer)
    [c] = generate(
        "What is 7*8?",
        ReprefillEngine.from_model(model, tokenizer),
        BudgetForcing(max_thinking_tokens=24, max_answer_tokens=4),
    )
    assert c.thinking_tokens <= 24 and c.output_token_ids


def test_thread_tuner_keeps_the_count_whose_steps_cost_least():
    from s1.engines.threads import ThreadTuner

    tuner = ThreadTuner([1, 2], every=10, probe=2)
    cost = {1: 0.010, 2: 0.030}  # seconds per token each count takes on a busy machine
    seen = []

    def run(steps, tokens=8):
        for _ in range(steps):
            n = tuner.threads()
            seen.append(n)
            tuner.record(n, cost[n] * tokens, tokens)

    run(1, tokens=500)  # a prompt chunk is not compared: the round waits for decoding steps
    run(4)
    assert seen == [2, 2, 2, 1, 1] and tuner.current == 1, "the cheaper count was not kept"
    run(10)
    assert seen[5:15] == [1] * 10 and tuner.every == 10  # it changed, so the next round comes as soon
    run(4)
    assert tuner.current == 1 and tuner.every == 20  # unchanged: rounds come more rarely
    cost[1], cost[2] = 0.030, 0.010  # the other process finished
    run(60)
    assert tuner.current == 2


def test_a_long_prompt_joins_in_chunks_while_running_rows_keep_decoding(tiny):
    from s1.engines.base import prepare_ids
    from s1.engines.batching import BATCH_TOKENS

    engine = HFEngine(*tiny)
    thinking = BudgetForcing(max_thinking_tokens=60, min_thinking_tokens=60, max_answer_tokens=2)
    running = [
        make_request(engine.tokenizer, engine.format_tokens, engine.context_length, q, thinking, Sampling())
        for q in QUESTIONS[:2]
    ]
    text = engine.tokenizer.encode(" ".join(QUESTIONS), add_special_tokens=False)
    ids = (text * (3 * BATCH_TOKENS // len(text) + 1))[: 3 * BATCH_TOKENS]
    long = prepare_ids(
        engine.format_tokens,
        engine.context_length,
        "long",
        ids,
        BudgetForcing(max_thinking_tokens=4, max_answer_tokens=2),
        Sampling(),
    )
    alone = [engine.generate([r])[0].output_token_ids for r in running + [long]]
    produced = []
    loop = engine.loop(3, on_token=lambda i, token, state: produced.append(i))
    loop.add(0, running[0])
    loop.add(1, running[1])
    loop.step()
    loop.step()
    loop.add(2, long)
    results, joining_steps = {}, 0
    while loop.busy:
        produced.clear()
        joining = any(r.index == 2 and r.joining for r in loop.rows) or bool(loop.waiting)
        for i, _, state, _ in loop.step():
            results[i] = list(state.output)
        if joining and 2 not in produced:
            joining_steps += 1
            waited = {0, 1} - set(produced) - set(results)
            assert not waited, f"rows {waited} waited for a token while the long prompt joined"
    assert joining_steps >= 3, "the long prompt joined in one step"
    assert [results[i] for i in range(3)] == alone


def test_linear_layers_run_through_onednn_only_inside_the_engine_forward(tiny):
    """The engine's forwards compute the float32 linear layers with oneDNN (faster than MKL's sgemm at
    decoding's few rows); outside them, and after a forward that raised, the model is torch's own again."""
    import pytest
    import torch

    from s1.engines.onednn import OneDNNLinears, available

    model, _ = tiny
    assert available(), "this torch build has no oneDNN linear; the engine would run at MKL's speed"
    linears = OneDNNLinears(model)
    layer = linears.layers[0]
    assert len(linears.layers) == sum(type(m) is torch.nn.Linear for m in model.modules())
    x = torch.randn(3, 5, layer.in_features)
    own = torch.nn.functional.linear(x, layer.weight, layer.bias)
    onednn = torch.ops.mkldnn._linear_pointwise(x.reshape(15, -1), layer.weight, layer.bias, "none", [], "").view(
        3, 5, -1
    )
    with linears.active():
        inside = layer(x)
    assert torch.equal(inside, onednn)
    torch.testing.assert_close(inside, own, rtol=1e-5, atol=1e-5)  # float32 both: the last bits differ at most
    assert torch.equal(layer(x), own)
    with pytest.raises(RuntimeError), linears.active():
        raise RuntimeError("a forward that fails")
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_packed_weights_change_speed_never_results():
    """Whether a machine has the memory to keep packed copies must not change a single bit, at any row
    count, with or without a bias; a weight changed in place (training between two generations) or
    replaced is packed again."""
    import torch

    from s1.engines.onednn import OneDNNLinears

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(96, 160), torch.nn.Linear(160, 64, bias=False))
    packing, plain = OneDNNLinears(model), OneDNNLinears(model)  # packing decides by its probe of this CPU
    plain.pack = False
    packing.prepare()
    assert set(packing.packed) == (set(model) if packing.pack else set()) and not plain.packed
    for rows in (0, 1, 2, 3, 8, 40):
        x = torch.randn(rows, 96)
        with packing.active():
            a = model(x)
        with plain.active():
            b = model(x)
        assert torch.equal(a, b), rows

    def unpacked(x):
        """oneDNN on the plain weights, which the probe found bit-identical to packed ones (MKL rounds otherwise)."""
        with plain.active():
            return model(x)

    x = torch.randn(4, 96)
    with torch.no_grad():
        model[0].weight.mul_(2)
    model[1].weight = torch.nn.Parameter(torch.randn(64, 160))
    with packing.active():
        changed = model(x)
    assert torch.equal(changed, unpacked(x))  # a stale packed copy would differ by far more than rounding
    for _ in range(2):  # twice: the second new storage may land where the first one's predecessor was
        with torch.no_grad():
            model[0].weight.data = model[0].weight.data * 3  # new storage behind the same Parameter (as `.to()` does)
    with packing.active():
        changed = model(x)
    assert torch.equal(changed, unpacked(x))  # a stale packed copy would differ by far more than rounding
    with torch.no_grad():
        model[0].weight.data.add_(1)  # in place through .data: nothing moves, so the engine is told
    packing.forget()
    with packing.active():
        changed = model(x)
    assert torch.equal(changed, unpacked(x))  # a stale packed copy would differ by far more than rounding


def test_the_engine_steps_with_onednn_linears(tiny):
    """Every linear layer of the tiny model runs through oneDNN during the engine's steps (seen from inside
    the layer call), and only then."""
    import torch

    from s1.engines.onednn import OneDNNLinears

    model, tokenizer = tiny
    engine = HFEngine(model, tokenizer)
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda m, args: seen.append(isinstance(m.__dict__.get("forward"), partial)))
        for m in model.modules()
        if type(m) is torch.nn.Linear
    ]
    try:
        generate(QUESTIONS[:2], engine, BudgetForcing(max_thinking_tokens=4, max_answer_tokens=2), batch_size=2)
        inside = list(seen)
        model(torch.tensor([[1, 2, 3]]))
    finally:
        for hook in hooks:
            hook.remove()
    assert inside and all(inside)
    assert not any(seen[len(inside) :])
    assert isinstance(engine.linears, OneDNNLinears)
    assert HFEngine(model, tokenizer).linears is engine.linears  # one packed copy per model, however many engines
    layer = engine.linears.layers[0]
    with torch.backends.mkldnn.flags(enabled=False), engine.linears.active():
        assert "forward" not in layer.__dict__  # switched off by the user: torch's own linear
    with torch.autocast("cpu", dtype=torch.bfloat16), engine.linears.active():
        assert "forward" not in layer.__dict__  # autocast decides the dtype: torch's own linear


def test_only_plain_float32_linear_layers_are_switched():
    import torch

    from s1.engines.onednn import OneDNNLinears

    class LoRALike(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4).bfloat16(), LoRALike(4, 4))
    assert OneDNNLinears(model).layers == [model[0]]
