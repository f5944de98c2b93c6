"""lm-evaluation-harness end to end against `s1 serve`: a real server process, lm-eval's own
`local-completions` and `local-chat-completions` models, offline tasks read from local JSONL.

The tasks live in tests/fixtures/lm_eval/; their data path is filled in here because `datasets`
resolves a relative `data_files` path against the current directory. Every HTTP exchange lm-eval
makes goes through the real `requests.post`; it is only recorded, so that a refusal from the server
fails with the server's own message and the request body that caused it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.serve.test_serve import served

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
LIMIT = 6  # of the 8 documents in arith.jsonl
CHAT_LIMIT = 4
MAX_THINKING = 8
MAX_GEN = 32


@pytest.fixture(scope="module")
def server(tiny_dir):
    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--batch-size", "4") as base:
        yield base


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory):
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    for yaml in FIXTURES.glob("*.yaml"):
        (folder / yaml.name).write_text(yaml.read_text().replace("@FIXTURES@", FIXTURES.as_posix()))
    # Nothing here needs the hub (local JSONL, the tokenizer is a local directory); these only make
    # that explicit for the parts that read them late. include_defaults=False: only these tasks are
    # indexed, not lm-eval's thousands of YAMLs.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield TaskManager(include_path=str(folder), include_defaults=False)


@pytest.fixture
def exchanges(monkeypatch):
    """(request body, response JSON) for every POST lm-eval sends; a non-2xx answer fails loudly."""
    import requests

    real_post, log = requests.post, []

    def post(url, *args, **kwargs):
        response = real_post(url, *args, **kwargs)
        body = kwargs.get("json")
        assert response.ok, (
            f"s1 serve answered {response.status_code} to POST {url}: {response.text[:1000]}\n"
            f"request body: {str(body)[:1000]}"
        )
        log.append((body, response.json()))
        return response

    monkeypatch.setattr(requests, "post", post)
    return log


def completions_args(base: str, tiny_dir) -> str:
    return (
        f"model=tiny,base_url={base}/v1/completions,tokenizer={tiny_dir},tokenizer_backend=huggingface,"
        "batch_size=4,num_concurrent=1,max_retries=1"
    )


def remote_args(base: str) -> str:
    """lm-eval with no local tokenizer: it tokenizes through the server's /tokenize, /detokenize, /tokenizer_info."""
    return f"model=tiny,base_url={base}/v1/completions,tokenizer_backend=remote,batch_size=4,num_concurrent=1"


def evaluate(task: str, task_manager, **kwargs) -> dict:
    import lm_eval

    results = lm_eval.simple_evaluate(
        tasks=[task], task_manager=task_manager, log_samples=True, bootstrap_iters=0, **kwargs
    )
    assert results is not None
    return results


def metric(results: dict, task: str, name: str) -> float:
    value = results["results"][task][name]
    assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, value)
    return value


def reference_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) in process, tokenized as lm-eval's TemplateLM._encode_pair does."""
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    n_context = len(tokenizer(context, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = model(torch.tensor([whole], device=model.device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[i - 1, whole[i]].item() for i in range(n_context, len(whole)))


def test_multiple_choice_loglikelihood_through_completions(server, tiny_dir, tiny, task_manager, exchanges):
    results = evaluate(
        "s1_arith_mc",
        task_manager,
        model="local-completions",
        model_args=completions_args(server, tiny_dir),
        limit=LIMIT,
    )
    acc, acc_norm = metric(results, "s1_arith_mc", "acc,none"), metric(results, "s1_arith_mc", "acc_norm,none")
    samples = results["samples"]["s1_arith_mc"]
    assert len(samples) == LIMIT
    assert sorted(s["doc_id"] for s in samples) == list(range(LIMIT))

    # lm-eval sent token ids with echo, and the scores it read back are the model's own.
    assert exchanges and all(body["echo"] is True and body["max_tokens"] == 1 for body, _ in exchanges)
    model, tokenizer = tiny
    correct = 0
    for sample in samples:
        assert len(sample["resps"]) == 4  # one loglikelihood request per choice
        lls = [resp[0][0] for resp in sample["resps"]]
        for ll, (context, continuation) in zip(lls, sample["arguments"]):
            assert isinstance(ll, float) and math.isfinite(ll) and ll < 0, ll
            assert ll == pytest.approx(
                reference_loglikelihood(model, tokenizer, context, continuation), rel=1e-3, abs=1e-2
            )
        correct += max(range(4), key=lambda i: lls[i]) == sample["target"]
    assert acc == pytest.approx(correct / LIMIT)
    assert acc_norm >= 0.0


def test_generate_until_through_completions(server, tiny_dir, task_manager, exchanges):
    results = evaluate(
        "s1_arith_gen",
        task_manager,
        model="local-completions",
        model_args=completions_args(server, tiny_dir),
        limit=LIMIT,
    )
    metric(results, "s1_arith_gen", "exact_match,first_number")
    samples = results["samples"]["s1_arith_gen"]
    assert len(samples) == LIMIT
    for body, _ in exchanges:
        assert body["max_tokens"] == 8 and body["temperature"] == 0.0
        assert body["stop"] == ["\n", "Question:", "<|im_end|>"]  # the task's `until`, then the tokenizer's EOS
    # local-completions does not cut at `stop` itself: the server must have.
    for sample in samples:
        [[text]] = sample["resps"]
        assert isinstance(text, str) and "\n" not in text and "Question:" not in text, text


def test_generate_until_through_chat_completions_with_budget(server, task_manager, exchanges):
    results = evaluate(
        "s1_arith_gen",
        task_manager,
        model="local-chat-completions",
        model_args=f"model=tiny,base_url={server}/v1/chat/completions,num_concurrent=1,max_retries=1",
        apply_chat_template=True,
        limit=CHAT_LIMIT,
        # max_gen_toks is max_tokens, which counts thinking: above the cap plus the answer's room (the README's recipe)
        gen_kwargs=f"max_gen_toks={MAX_GEN},max_thinking_tokens={MAX_THINKING},max_answer_tokens=8,num_ignore=1",
    )
    metric(results, "s1_arith_gen", "exact_match,first_number")
    samples = results["samples"]["s1_arith_gen"]
    assert len(samples) == CHAT_LIMIT
    assert all(isinstance(s["resps"][0][0], str) for s in samples)
    # The budget fields went through lm-eval untouched, and the server applied them.
    assert len(exchanges) == CHAT_LIMIT  # chat completions are never batched
    for body, answer in exchanges:
        assert body["messages"][-1]["role"] == "user" and "Question:" in body["messages"][-1]["content"]
        assert body["max_thinking_tokens"] == MAX_THINKING and body["num_ignore"] == 1 and body["max_tokens"] == MAX_GEN
        assert answer["s1"]["thinking_tokens"] <= MAX_THINKING
        assert "note" not in answer["s1"], "max_tokens left room for the answer"


def test_remote_tokenizer_loglikelihood_and_generation(server, tiny, task_manager, exchanges):
    """`tokenizer_backend=remote` (vLLM's tokenizer endpoints; lm-eval 0.4.13 found none before): the
    loglikelihoods are the model's own, tokenized as a local tokenizer would, and generation stops at the EOS
    string the server's /tokenizer_info names."""
    model, tokenizer = tiny
    results = evaluate(
        "s1_arith_mc", task_manager, model="local-completions", model_args=remote_args(server), limit=CHAT_LIMIT
    )
    samples = results["samples"]["s1_arith_mc"]
    assert len(samples) == CHAT_LIMIT
    for sample in samples:
        for resp, (context, continuation) in zip(sample["resps"], sample["arguments"]):
            assert resp[0][0] == pytest.approx(
                reference_loglikelihood(model, tokenizer, context, continuation), rel=1e-3, abs=1e-2
            )
    exchanges.clear()
    results = evaluate(
        "s1_arith_gen", task_manager, model="local-completions", model_args=remote_args(server), limit=CHAT_LIMIT
    )
    assert len(results["samples"]["s1_arith_gen"]) == CHAT_LIMIT
    assert exchanges and all(body["stop"][-1] == tokenizer.eos_token for body, _ in exchanges)
