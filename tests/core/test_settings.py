"""Each setting declared once: seeds derived in one place, and every front end built from the declarations."""

from __future__ import annotations

from s1.core.sampling import SEED_LIMIT, derive_seed


def test_seeds_keep_the_values_run_directories_were_written_with():
    """Values computed with the derivations that existed before `derive_seed` (evaluate's problem_seed, its search
    children): a changed value would orphan finished samples."""
    # evaluation samples: hash of (seed, problem id, sample, tries)
    assert derive_seed(0, 0, problem="60") == 373846627622337909
    assert derive_seed(1234, 3, problem="aime-7", tries=2) == 4475051058303305873
    assert derive_seed(5, 0, problem="p1") == 7864845531088497279
    assert derive_seed(5, 1, problem="p1") == 5293104578740480536
    assert derive_seed(5, 0, problem="p1", tries=1) == 3143556744720608770
    assert derive_seed(2**63 - 1, 0, problem="x", tries=1) == 5008511072899106421
    # a search's children: "node.child" (parallel methods have no node: the child index alone)
    assert derive_seed(7, 1, problem="12", node=4) == 6767944509766762444
    assert derive_seed(7, 3, problem=12, node="None") == 1845099737498934861
    assert derive_seed(5, 3, problem="p1") == 4927363384365551212
    # the server's k-th choice and curation's k-th retry: the seed itself for the first, then a hash of (seed, k) —
    # no longer seed + k, which made choice k of seed s the sample of choice 0 of seed s + k (neither is stored in
    # an identity: curation's call cache keys the retry's index, not its seed)
    assert derive_seed(41, 0) == 41 and derive_seed(SEED_LIMIT - 1, 0) == SEED_LIMIT - 1
    assert derive_seed(41, 3) == 5358717464574693980
    draws = {s: [derive_seed(s, k) for k in range(8)] for s in range(8)}
    assert len({d for seeds in draws.values() for d in seeds}) == 64
    assert all(0 <= d < SEED_LIMIT for seeds in draws.values() for d in seeds)
    assert derive_seed(None, 3) is None and derive_seed(None, 0, problem="p1") is None


def test_each_reprefill_round_draws_its_own_seed_from_where_it_starts():
    """Round 0 sends the request's seed; later rounds a seed of (seed, start), the same whoever sends that round
    (a sweep's branch or its setting alone), different from every other round's and from the server's choices."""
    assert derive_seed(41, at=0) == 41
    rounds = [derive_seed(41, at=a) for a in range(1, 40)]
    assert len(set(rounds)) == len(rounds) and all(0 <= r < SEED_LIMIT for r in rounds)
    assert set(rounds).isdisjoint(derive_seed(41, k) for k in range(40))
    assert derive_seed(41, at=7) == derive_seed(41, at=7) != derive_seed(42, at=7)
    assert derive_seed(None, at=5) is None


def test_eval_configs_keep_the_identities_run_directories_were_written_with():
    """EvalConfig's forcing, sampling and search keys now come from the declarations; the hashes (computed with the
    config as it was declared by hand) must not move, or resumed runs would generate every sample again."""
    from s1.core.rundir import identity_hash
    from s1.evaluate.config import EvalConfig, context_hash

    # s1 eval's answer budget now defaults to what the context leaves (issue 29 item 7): a run written with the
    # old default keeps its samples when the budget is given as it was
    assert context_hash(EvalConfig(max_answer_tokens=1024)) == "f174f3d25d8a2431695c"
    assert context_hash(EvalConfig()) != "f174f3d25d8a2431695c"
    config = EvalConfig(
        max_answer_tokens=1024,
        methods=["budget_forcing", "majority", "best_of_n", "rebase", "rejection_sampling"],
        reward_model="x:y",
        max_thinking_tokens=[8, None],
        num_ignore=[0, 2],
        extensions=["Wait", "Hmm"],
        temperature=0.7,
        seed=3,
        samples=2,
        widths=[4],
        reward_aggregate="min",
        step_delimiter="\n",
        rebase_temperature=1,
        rebase_vote="weighted",  # the defaults these hashes were made with; issue 29 moved both to the paper's
        max_tries=16,  # (majority vote, draw until it fits): a run written before resumes by naming them
    )
    assert context_hash(config) == "b0f69f62970cc7126912"
    assert identity_hash([s.spec() for s in config.settings()]) == "115021774b97bef09f81"


# ------------------------------------------------------------------------ one declaration, every front end
def _commands() -> dict:
    """Every command of the CLI, as click sees it (name -> command; `curate` is a group)."""
    import typer.main

    from s1.cli import app

    return dict(typer.main.get_command(app).commands)


def test_every_command_takes_every_setting_of_the_groups_it_takes():
    """The table of which command takes which group covers every command, and a command that takes a group has
    an option for each of its declared fields, spelt as declared (so `s1 serve --min-thinking-tokens` exists)."""
    from dataclasses import fields

    from s1.cli.settings import TAKES
    from s1.core.forcing import BudgetForcing
    from s1.core.sampling import Sampling
    from s1.core.settings import declared

    for owner in (BudgetForcing, Sampling):  # a field added without setting(...) would escape every front end
        assert [f.name for f in fields(owner)] == [d.field for d in declared(owner)]
    commands = _commands()
    assert set(commands) == set(TAKES)
    missing = []
    for name, groups in TAKES.items():
        options = {p.name: p.opts for p in commands[name].params}
        for owner in groups:
            for d in declared(owner):
                if owner in (BudgetForcing, Sampling) and d.cli_flag not in options.get(d.name, ()):
                    missing.append(f"s1 {name} {d.cli_flag}")
    assert not missing, missing
    assert "--min-thinking-tokens" in {o for p in commands["serve"].params for o in p.opts}


def test_the_server_schema_and_the_config_files_take_every_setting_with_its_range():
    """The server's request fields, s1 eval's config keys and a curation role's keys are the declared settings:
    same names, same defaults, the request fields with the declared bounds."""
    from dataclasses import fields

    from s1.core.forcing import BudgetForcing
    from s1.core.sampling import Sampling
    from s1.core.settings import declared
    from s1.curate.config import Role, role_key
    from s1.evaluate.config import EvalConfig
    from s1.serve.protocol import ChatBody, CompletionBody, Defaults

    eval_keys = {f.name: f for f in fields(EvalConfig)}
    for d in declared(BudgetForcing) + declared(Sampling):
        for body in (ChatBody, CompletionBody):
            field = body.model_fields[d.name]
            bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
            assert field.default is None and bounds == d.bounds(), d.name
        assert d.name in eval_keys, d.name
        if d.name != "max_tokens":  # a role's max_tokens is its reply's length: BudgetForcing's max_answer_tokens
            assert role_key(d.name) in Role.model_fields, d.name
    assert Defaults().forcing == BudgetForcing() and Defaults().sampling == Sampling()
    config = EvalConfig()
    assert config.forcing() == BudgetForcing(max_answer_tokens=None)  # s1 eval's own default (EVAL_DEFAULTS)
    assert (config.max_thinking_tokens, config.num_ignore, config.extensions) == ([None], [0], ["Wait"])
    assert Role().forcing() == BudgetForcing(max_answer_tokens=Role().max_tokens)


def test_role_cache_keys_do_not_move_with_the_new_forcing_keys():
    """Roles gained the thinking settings; a role that leaves them at their defaults keys its cached calls exactly
    as before (the key below was computed with the role as it was declared by hand), one that sets one does not."""
    from s1.core.rundir import identity_hash
    from s1.curate.config import Role

    role = Role(engine="remote", model="m", temperature=0.5, max_thinking_tokens=64, max_tokens=32, seed=3)
    assert identity_hash(role.key()) == "57ebf0f49cbd9190bd08"
    assert identity_hash(Role(**{**role.model_dump(), "num_ignore": 2}).key()) != "57ebf0f49cbd9190bd08"


# ------------------------------------------------------------------ errors name the setting, each in its terms
def _curate_config(tmp_path, teacher: dict):
    import yaml

    from tests.conftest import DATA

    config = {
        "output": str(tmp_path / "run"),
        "sources": [{"name": "math", "path": str(DATA / "math_cot_100.jsonl"), "limit": 2}],
        "roles": {"teacher": teacher},
    }
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_bad_forcing_value_is_named_by_each_front_end_in_its_own_terms(tmp_path, tiny_dir):
    """min_thinking_tokens 9 over a cap of 5: the command line names --min-thinking-tokens, the server the request
    field, a curation config the key under its role. And s1 serve --min-thinking-tokens, derived from the same
    declaration, is the default of requests that set none (never above a cap the request sets)."""
    import httpx
    import pytest

    from s1.core.errors import UserError
    from s1.curate.config import load_config
    from tests.cli.test_cli import one_error_line, s1
    from tests.serve.test_serve import chat, served

    line = one_error_line(
        s1("generate", "--model", str(tiny_dir), "--max-thinking-tokens", "5", "--min-thinking-tokens", "9", "Q")
    )
    assert "Invalid value for '--min-thinking-tokens'" in line and "(9) is larger than" in line

    with pytest.raises(UserError) as caught:
        load_config(_curate_config(tmp_path, {"max_thinking_tokens": 5, "min_thinking_tokens": 9}))
    assert "roles.teacher.min_thinking_tokens" in str(caught.value) and "--" not in str(caught.value)

    with served("--model", str(tiny_dir), "--served-model-name", "tiny", "--min-thinking-tokens", "12") as base:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_thinking_tokens": 5, "min_thinking_tokens": 9}
        bad = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
        message = bad.json()["error"]["message"]
        assert (
            bad.status_code == 400 and message.startswith("min_thinking_tokens (9) is larger") and "--" not in message
        )
        forced = chat(base, "What is 2+2?", {"max_thinking_tokens": 24, "max_answer_tokens": 2}, stream=False)["s1"]
        assert forced["thinking_tokens"] >= 12 and forced["extensions_used"] > 0, forced
        capped = chat(base, "What is 2+2?", {"max_thinking_tokens": 4, "max_answer_tokens": 2}, stream=False)["s1"]
        assert capped["thinking_tokens"] <= 4


def test_an_unreachable_server_is_named_as_each_front_end_configured_it(tmp_path, tiny_dir):
    """The remote engine cannot reach its server: the user is pointed at the setting they wrote, --base-url for
    s1 generate, --upstream for s1 serve, roles.teacher.base_urls in a curation config (not "--base-url")."""
    import pytest

    from s1.core.errors import UserError
    from s1.curate import load_config, run
    from tests.cli.test_cli import one_error_line, s1
    from tests.serve.test_serve import free_port

    closed = f"http://127.0.0.1:{free_port()}/v1"
    common = ("--model", str(tiny_dir))
    line = one_error_line(s1("generate", *common, "--engine", "remote", "--base-url", closed, "Hi"))
    assert "Cannot reach the server" in line and "check --base-url" in line
    line = one_error_line(s1("serve", *common, "--upstream", closed, "--port", str(free_port())))
    assert "Cannot reach the server" in line and "check --upstream" in line

    config = load_config(_curate_config(tmp_path, {"engine": "remote", "model": str(tiny_dir), "base_urls": [closed]}))
    with pytest.raises(UserError) as caught:
        run(config, ["collect", "traces"], show_progress=False, say=lambda s: None)
    assert "check roles.teacher.base_urls" in str(caught.value), caught.value
