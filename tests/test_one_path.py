"""One path for each job: the engine factory reads every setting, and the one judge (sync and
async) behaves the same wherever a verifier is run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from rrr_agent import (
    Engine,
    LoopOptions,
    ModelOutput,
    ScriptedModel,
    Task,
    Verdict,
    VerifierError,
    build_verifier,
    load_settings,
)
from rrr_agent.cli import app
from rrr_agent.testing import StubOpenAIServer, StubResponse
from rrr_agent.verifiers import Verifier, register_verifier

from .conftest import math_task

runner = CliRunner()


# ------------------------------------------------------------------------------ engine factory


@pytest.fixture
def stub() -> Any:
    with StubOpenAIServer(default=StubResponse(text="41")) as server:
        yield server


def _stub_env(monkeypatch: pytest.MonkeyPatch, stub: StubOpenAIServer, tmp_path: Path) -> Path:
    """Settings through RRR_* variables: a model, its server, a key, a prompts folder."""
    prompts = tmp_path / "prompts"
    (prompts / "reflection").mkdir(parents=True)
    (prompts / "reflection" / "math.txt").write_text("Custom reflection wording.\n")
    monkeypatch.setenv("RRR_MODEL", "openai/stub-model")
    monkeypatch.setenv("RRR_API_BASE", stub.base_url)
    monkeypatch.setenv("RRR_API_KEY", "sk-planted-key")
    monkeypatch.setenv("RRR_PROMPTS_DIR", str(prompts))
    monkeypatch.setenv("RRR_TRANSPORT_TRIES", "2")
    monkeypatch.setenv("RRR_TIMEOUT_S", "7")
    # Would the embedded model be prepared, it would be here: it must stay empty.
    cache = tmp_path / "embedded-cache"
    monkeypatch.setenv("RRR_CACHE_DIR", str(cache))
    return cache


def test_from_settings_reads_every_setting(
    monkeypatch: pytest.MonkeyPatch, stub: StubOpenAIServer, tmp_path: Path
) -> None:
    cache = _stub_env(monkeypatch, stub, tmp_path)
    engine = Engine.from_settings(load_settings(log_path=tmp_path / "t.jsonl"))
    assert engine.model == "openai/stub-model"
    assert engine.timeout_s == 7 and engine.retry_policy.tries == 2
    traj = engine.run_sync(math_task())
    assert traj.outcome.value == "failed" and len(stub.requests) == 3
    assert all(h["authorization"] == "Bearer sk-planted-key" for h in stub.headers)
    assert stub.requests[1]["messages"][-1]["content"] == "Custom reflection wording."
    assert engine.store is not None and len(list(engine.store.read())) == 1
    assert not cache.exists()  # the embedded model was not prepared


def test_from_settings_defaults_to_the_embedded_model_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepared: list[str] = []
    monkeypatch.setattr("rrr_agent.embedded.prepare_for", lambda m, p=None: prepared.append(m))
    engine = Engine.from_settings(load_settings(), log=False)
    assert engine.model == "local/gemma-3-270m" and prepared == ["local/gemma-3-270m"]
    assert engine.store is None and engine.error_log is None
    other = Engine.from_settings(load_settings(model="hosted_vllm/x"), log=False)
    assert other.model == "hosted_vllm/x" and prepared[-1] == "hosted_vllm/x"


def test_eval_and_mine_use_the_settings(
    monkeypatch: pytest.MonkeyPatch, stub: StubOpenAIServer, tmp_path: Path
) -> None:
    cache = _stub_env(monkeypatch, stub, tmp_path)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(math_task(prompt=f"q{i}").model_dump_json() + "\n" for i in range(2)))
    result = runner.invoke(app, ["eval", "--tasks", str(tasks), "--no-control", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["models"][0]["model"] == "openai/stub-model"
    assert report["models"][0]["overall"]["n"] == 2
    mined = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["train", "mine", "--tasks", str(tasks), "-o", str(mined),
                                 "-n", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["failures_kept"] == 2
    assert stub.headers and all(h["authorization"] == "Bearer sk-planted-key" for h in stub.headers)
    reflections = [r for r in stub.requests if r["messages"][-1]["content"].startswith("Custom")]
    assert len(reflections) == 2  # the eval's reflections used the prompts folder
    assert not cache.exists()


# ------------------------------------------------------------------------------ the one judge


@register_verifier
class _SlowUpper(Verifier):
    type: ClassVar[str] = "test-slow-upper"
    blocking: ClassVar[bool] = True

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        return Verdict(passed=(output.text or "").isupper(), feedback="upper?")


@register_verifier
class _AsyncUpper(Verifier):
    type: ClassVar[str] = "test-async-upper"

    async def verify(self, output: ModelOutput, task: Task) -> Verdict:
        await asyncio.sleep(0)
        return Verdict(passed=(output.text or "").isupper(), feedback="upper?")


@register_verifier
class _Broken(Verifier):
    type: ClassVar[str] = "test-broken"

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        return "yes"  # type: ignore[return-value]


SPECS = [
    {"type": "python", "path": "tests.helpers:is_upper"},
    {"type": "python", "path": "tests.helpers:async_is_upper"},
    {"type": "test-slow-upper"},
    {"type": "test-async-upper"},
]


@pytest.mark.parametrize("spec", SPECS, ids=[s["type"] + str(i) for i, s in enumerate(SPECS)])
async def test_judge_is_the_same_sync_async_blocking(spec: dict[str, Any]) -> None:
    task = Task.from_prompt("shout", spec)
    verifier = build_verifier(spec)
    for text, expected in (("HELLO", True), ("hello", False)):
        output = ModelOutput(text=text)
        assert (await verifier.judge(output, task)).passed is expected
        # The sync wrapper, called from inside a running loop (it judges on a helper thread).
        assert verifier.judge_sync(output, task).passed is expected
        assert (await asyncio.to_thread(verifier.judge_sync, output, task)).passed is expected


async def test_judge_turns_crashes_and_bad_returns_into_verifier_errors() -> None:
    crash = build_verifier({"type": "python", "path": "tests.helpers:crashes"})
    task = Task.from_prompt("x", {"type": "test-broken"})
    with pytest.raises(VerifierError, match="ZeroDivisionError"):
        await crash.judge(ModelOutput(text="x"), task)
    with pytest.raises(VerifierError, match="returned str, not a Verdict"):
        build_verifier({"type": "test-broken"}).judge_sync(ModelOutput(text="x"), task)


def test_cli_verify_and_eval_metric_judge_async_verifiers(tmp_path: Path) -> None:
    spec = json.dumps({"type": "test-async-upper"})
    ok = runner.invoke(app, ["verify", "--spec", spec, "--response", "LOUD", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True
    bad = runner.invoke(app, ["verify", "--spec", spec, "--response", "quiet"])
    assert bad.exit_code == 4
    # The answer-leak metric of the evaluation runs async verifiers too (it used to skip them).
    from rrr_agent.evaluation import evaluate

    task = Task.from_prompt("shout", {"type": "test-async-upper"}, family="math", id="t0")
    model = ScriptedModel(["quiet", "SHOUT IT", "loud"])
    report = evaluate([task], [model.model], control=False,
                      settings=load_settings(log=False))  # fmt: skip
    metrics = report.models[0].reflection_metrics()
    assert metrics["reflections"] == 1 and metrics["reflection_holds_full_answer"]["k"] == 1


def test_grpo_reward_builds_the_retry_turn_like_the_engine() -> None:
    """The GRPO reward continues the conversation exactly as the engine does, and judges the
    retry with the one judge."""
    from rrr_trainer.grpo import RetryReward

    model = ScriptedModel(["41", "I added wrong.", "42"])
    task = math_task()
    traj = Engine(model.model, options=LoopOptions(max_retries=1)).run_sync(task)
    reflection_prompt, engine_retry = model.requests[1].messages, model.requests[2].messages
    seen: list[list[dict[str, Any]]] = []

    def fake_generate(conversations: list[Any], template_kwargs: Any = None) -> list[str]:
        seen.extend(conversations)  # the policy would continue these; the script answers
        return ["42", "43"]

    reward = RetryReward(tokenizer=None, stop_ids=[])
    reward.generate_retries = fake_generate  # type: ignore[method-assign]
    rewards = reward(
        prompts=[reflection_prompt, reflection_prompt],
        completions=[[{"role": "assistant", "content": "I added wrong."}]] * 2,
        task=[task.model_dump_json()] * 2,
        retry_instruction=[traj.attempts[1].instruction] * 2,
    )
    assert seen == [engine_retry, engine_retry]
    assert rewards == [1.0, 0.0]


def test_a_blank_reflection_earns_nothing_online_and_offline() -> None:
    """A reflection must carry something: a blank one earns 0 even when its retry passes (the
    default), in the online reward and in offline groups alike; ``reward_blank_reflections``
    restores the paper's plain rule."""
    from rrr_trainer.data import FailureExample
    from rrr_trainer.grpo import RetryReward
    from rrr_trainer.offline import _groups

    task = math_task()

    def rewards(reward_blank: bool) -> list[float]:
        reward = RetryReward(tokenizer=None, stop_ids=[], reward_blank=reward_blank)
        reward.generate_retries = lambda conversations, kw=None: ["42"] * len(conversations)  # type: ignore[method-assign]
        return reward(
            prompts=[[{"role": "user", "content": "What is 17 + 25?"}]] * 3,
            completions=[[{"role": "assistant", "content": t}] for t in ("Add.", "", "  ")],
            task=[task.model_dump_json()] * 3,
            retry_instruction=["Try again."] * 3,
        )

    assert rewards(False) == [1.0, 0.0, 0.0]
    assert rewards(True) == [1.0, 1.0, 1.0]
    example = FailureExample(
        task_json=task.model_dump_json(), prompt=[], reflection_instruction="",
        retry_instruction="", failed_answer="41", task_id=task.id, trajectory_id="t",
        group=[{"text": "Add.", "reward": 1.0}, {"text": " ", "reward": 1.0}],
    )  # fmt: skip
    groups, skipped = _groups([example])
    assert groups[0].rewards == [1.0, 0.0]
    groups, skipped = _groups([example], reward_blank=True)
    assert not groups and skipped["all rewards equal"] == 1


def test_a_reflection_carries_something_only_when_it_is_said_about_its_own_problem() -> None:
    """``carries_something``: one rule for the learning benchmark's goal check and its reflection
    table. A blank reflection, one that restates the failed answer (spacing and a trailing period
    ignored) and one written for more than one problem (case and punctuation ignored) carry
    nothing; a text said for one problem does, even when it is wrong."""
    from rrr_trainer.data import carries_something

    rows = [
        ("a", "91 - 34 is 57, not 61.", "91 - 34"),  # says something
        ("b", " 91 / 34. ", "91 / 34"),  # the failed answer restated
        ("c", "", "12 + 8"),  # blank
        ("d", "?!", "12 + 8"),  # only punctuation: blank too
        ("e", "Numbers are the same.", "3 * 4"),  # the same phrase for two problems
        ("f", "numbers are the SAME", "5 + 6"),
        ("g", "Try 5 * 6", "5 + 6"),  # wrong advice, but about its own problem
        ("g", "Try 5 * 6", "5 + 6"),  # the same problem twice is still one problem
    ]
    assert carries_something(rows) == [True, False, False, False, False, False, True, True]
    assert carries_something([]) == []


def test_a_reflection_repeated_across_problems_earns_nothing_online_and_offline() -> None:
    """``max_reflection_repeats``: a text written for more than that many different problems says
    nothing about the problem, so it earns 0 even when its retry passes. Case, spacing and
    punctuation are ignored and digits are kept; the online reward counts across its calls, and
    offline groups count over the whole log."""
    from rrr_trainer.data import (
        FailureExample,
        RepeatCounter,
        reflection_key,
        repeated_reflections,
    )
    from rrr_trainer.grpo import RetryReward
    from rrr_trainer.offline import _groups, _repeated

    assert reflection_key("  Numbers are the SAME!! ") == reflection_key("numbers are the same")
    assert reflection_key("Try 91 - 87.") != reflection_key("Try 12 - 8.")
    rows = [("a", "Same."), ("b", "same"), ("b", "SAME"), ("c", "Add 2."), ("c", " "), ("d", "")]
    assert repeated_reflections(rows, 1) == {"same"}  # two problems > 1; blanks never count
    assert repeated_reflections(rows, 2) == frozenset()
    assert repeated_reflections(rows, 0) == frozenset()  # off
    # Online counts as rows arrive: after every row, the same answer as a count over the log.
    for limit in (1, 2):
        counter = RepeatCounter(limit)
        for i, row in enumerate(rows):
            assert counter.add([row]) == repeated_reflections(rows[: i + 1], limit)

    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]
    reward = RetryReward(tokenizer=None, stop_ids=[], max_repeats=1)
    reward.generate_retries = lambda conversations, kw=None: ["42"] * len(conversations)  # type: ignore[method-assign]
    logged: dict[str, float] = {}

    def score(task: Task, texts: list[str]) -> list[float]:
        return reward(
            prompts=[[{"role": "user", "content": task.messages[-1].content}]] * len(texts),
            completions=[[{"role": "assistant", "content": t}] for t in texts],
            task=[task.model_dump_json()] * len(texts),
            retry_instruction=["Try again."] * len(texts),
            log_metric=lambda name, value: logged.__setitem__(name, value),
        )

    # On one problem a phrase may recur; the second problem makes it a repeat from then on.
    first = ["Numbers are the same.", "numbers are the same", "Add 17."]
    assert score(tasks[0], first) == [1.0] * 3
    assert score(tasks[1], ["Numbers are the SAME", "Add 25."]) == [0.0, 1.0]
    assert logged["rrr/reflection_repeated"] == 0.5
    assert score(tasks[2], ["Add 17.", "Carry the one."]) == [0.0, 1.0]  # "add 17" now on two
    off = RetryReward(tokenizer=None, stop_ids=[])
    off.generate_retries = reward.generate_retries  # type: ignore[method-assign]
    assert off(prompts=[[]] * 2, completions=["Same.", "Same."],
               task=[tasks[0].model_dump_json(), tasks[1].model_dump_json()],
               retry_instruction=["Try again."] * 2) == [1.0, 1.0]  # fmt: skip

    def example(task: Task, texts: list[str]) -> FailureExample:
        return FailureExample(
            task_json=task.model_dump_json(), prompt=[], reflection_instruction="",
            retry_instruction="", failed_answer="41", task_id=task.id, trajectory_id=task.id,
            group=[{"text": t, "reward": 1.0} for t in texts],
        )  # fmt: skip

    examples = [example(tasks[0], ["Numbers are the same.", "Add 17."]),
                example(tasks[1], ["numbers are the same", "Add 25."])]  # fmt: skip
    groups, skipped = _groups(examples)  # the rule is off unless asked
    assert not groups and skipped["all rewards equal"] == 2
    repeated = _repeated(examples, 1)
    assert repeated == {"numbers are the same"}
    groups, _ = _groups(examples, repeated=repeated)
    assert [g.rewards for g in groups] == [[0.0, 1.0], [0.0, 1.0]]
    assert _repeated(examples, 2) == frozenset()


def test_a_reflection_must_state_a_true_equation_when_claims_are_checked(tmp_path: Path) -> None:
    """``reward_true_claims``: a reflection earns its retry's reward only when it states a true
    equation over the problem's own numbers and no false one, checked by arithmetic. One rule
    online, offline and in the round reports."""
    from rrr_trainer.data import FailureExample, equation_claims
    from rrr_trainer.grpo import RetryReward
    from rrr_trainer.offline import _groups
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings
    from rrr_agent.tasksets import get_taskset
    from rrr_agent.verifiers.countdown import normalize_operators

    countdown = next(iter(get_taskset("countdown2-test").load()))
    problem = countdown.user_text()  # the last user turn, not the few-shot examples
    a, b = countdown.verifier.numbers  # type: ignore[union-attr]
    assert problem.startswith(f"Numbers: {a}, {b}")
    assert equation_claims(f"{a} + {b} = {a + b}", problem) == (1, 0)
    assert equation_claims(f"{b} - {a} = {b - a}, so {a}*{b}={a * b}.", problem) == (2, 0)
    assert equation_claims(f"{a} + {b} = {a + b + 1}", problem) == (0, 1)  # false
    assert equation_claims("Numbers are the same.", problem) == (0, 0)  # no claim
    assert equation_claims("14 + 9 = 23", problem) == (0, 0)  # true, but not this problem's
    assert equation_claims("7 / 3 = 2.33 and 7 / 0 = 1", "7, 3 and 0") == (1, 1)
    assert equation_claims("7 / 3 = 2.3", "7 3") == (1, 0)  # rounded to the places shown
    assert equation_claims("7 / 3 = 2.4", "7 3") == (0, 1)
    # Operators are read as the Countdown verifier reads answers (run 20's reflections wrote
    # an en dash, which was no claim before): × ÷, the minus sign, the en dash, LaTeX; "x" too.
    assert equation_claims("85 – 37 = 48", "85 37") == (1, 0)
    assert equation_claims("37 − 85 = −48 and 6 × 7 = 42", "85 37 6 7") == (2, 0)
    assert equation_claims("8 ÷ 2 = 4, 8 \\div 2 = 5, 8 x 2 = 16", "8 2") == (2, 1)
    assert normalize_operators("85 – 37 × 2 ÷ 1") == "85 - 37 * 2 / 1"  # the verifier's reading

    task = math_task(prompt="What is 17 + 25?")
    texts = ["17 + 25 = 42.", "Numbers are the same.", "17 + 25 = 43.", "14 + 9 = 23", ""]
    reward = RetryReward(tokenizer=None, stop_ids=[], true_claims=True)
    reward.generate_retries = lambda conversations, kw=None: ["42"] * len(conversations)  # type: ignore[method-assign]
    scored = reward(
        prompts=[[{"role": "user", "content": task.messages[-1].content}]] * len(texts),
        completions=[[{"role": "assistant", "content": t}] for t in texts],
        task=[task.model_dump_json()] * len(texts),
        retry_instruction=["Try again."] * len(texts),
    )
    assert scored == [1.0, 0.0, 0.0, 0.0, 0.0]  # every retry passed; only the computation pays
    example = FailureExample(
        task_json=task.model_dump_json(), prompt=[], reflection_instruction="",
        retry_instruction="", failed_answer="41", task_id=task.id, trajectory_id="t",
        group=[{"text": t, "reward": 1.0} for t in texts],
    )  # fmt: skip
    assert _groups([example])[0][0].rewards == [1.0, 1.0, 1.0, 1.0, 0.0]  # off unless asked
    groups, _ = _groups([example], true_claims=True)
    assert groups[0].rewards == scored

    # The round report counts groups as training sees them.
    def reply(messages: list[dict[str, Any]]) -> str:
        if len(messages) == 1:
            return "7"  # every first attempt fails
        if len(messages) == 3:  # problem, failed attempt, reflection instruction
            return next(reflections)
        return "42"  # every retry passes

    reflections = iter(texts[:2] * 2)
    scripted = ScriptedModel(default=reply)
    settings = load_settings(log_path=tmp_path / "x.jsonl")
    tasks = [math_task(prompt="What is 17 + 25?", id=f"t{i}") for i in range(2)]
    run = sample_groups(tasks, scripted.model, tmp_path / "g.jsonl", k=2, settings=settings,
                        true_claims=True, concurrency=1)  # fmt: skip
    assert (run.failures, run.learnable, run.retries_passed, run.all_passed) == (2, 2, 2, 0)
    reflections = iter(texts[:2] * 2)
    plain = sample_groups(tasks, scripted.model, tmp_path / "h.jsonl", k=2, settings=settings,
                          concurrency=1)  # fmt: skip
    assert (plain.learnable, plain.all_passed) == (0, 2)


def _reward_batch(reflections: list[str]) -> dict[str, Any]:
    """One call's columns for the online reward (``RetryReward``): each reflection written after
    a failed first attempt at "What is 17 + 25?" (expected 42)."""
    task = math_task(prompt="What is 17 + 25?")
    n = len(reflections)
    return {
        "prompts": [[{"role": "user", "content": "What is 17 + 25?"}]] * n,
        "completions": [[{"role": "assistant", "content": t}] for t in reflections],
        "task": [task.model_dump_json()] * n,
        "retry_instruction": ["Try again."] * n,
    }


def test_a_retry_that_resubmits_the_failed_answer_earns_the_resubmit_reward(
    tmp_path: Path,
) -> None:
    """``resubmit_reward``: a reflection whose retry failed by resubmitting the failed answer
    earns that instead of a failed retry's 0, so a group in which every retry failed is
    learnable where some retries tried something new. With ``resubmit_scope = "with_pass"`` it
    applies only in groups where some retry passed, so a group of failures is never learnable
    by it alone. One rule online, offline (from the logged trajectories) and in the round
    reports, which count such retries either way."""
    from rrr_trainer import RRRTrainConfig
    from rrr_trainer.data import (
        answer_key,
        build_failure_set,
        reflection_reward,
        resubmits,
        scoped_resubmit_reward,
    )
    from rrr_trainer.grpo import RetryReward
    from rrr_trainer.offline import _groups
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import ConfigError

    assert resubmits(" 91 / 34", "91 / 34.") and resubmits("41", " 41 ")
    assert not resubmits("91 - 34", "91 / 34") and not resubmits("41", "42")
    assert not resubmits("", "") and not resubmits(None, "41")  # a blank is no resubmission
    # an arithmetic answer is read as the verifier reads it: a claimed value and spacing dropped
    assert resubmits(" 16 + 9 = 23", "16 + 9") and resubmits("16+9", " 16 + 9.")
    assert resubmits("(3 + 4) * 2 = 14", "(3+4)*2") and not resubmits("16 * 9 = 144", "16 + 9")
    assert answer_key("x = 5") == "x = 5" and answer_key("16 + 9 = 25, not 23") != "16+9"
    assert reflection_reward("Add again.", 0.0, False, (), None, True, -1.0) == -1.0
    assert reflection_reward("Add again.", 0.0, False, (), None, True) == 0.0  # off unless asked
    assert reflection_reward("", 0.0, False, (), None, True, -1.0) == -1.0  # before the rest
    # A retry that passes is never a resubmission's failure (a verifier that changed its mind).
    assert reflection_reward("Add again.", 1.0, False, (), None, True, -1.0) == 1.0
    with pytest.raises(ConfigError, match="below 1"):
        RRRTrainConfig(resubmit_reward=1.0).validate()
    with pytest.raises(ConfigError, match="resubmit_scope"):
        RRRTrainConfig(resubmit_reward=-1.0, resubmit_scope="some").validate()  # type: ignore[arg-type]
    assert scoped_resubmit_reward(-1.0, "all", [0.0, 0.0]) == -1.0
    assert scoped_resubmit_reward(-1.0, "with_pass", [0.0, 0.0]) is None
    assert scoped_resubmit_reward(-1.0, "with_pass", [0.0, 1.0]) == -1.0
    assert scoped_resubmit_reward(None, "with_pass", [1.0]) is None

    retries = {"Add again.": "41", "Say it again.": " 41.", "Carry the one.": "43",
               "It is 42.": "42"}  # fmt: skip
    texts = list(retries)
    reward = RetryReward(tokenizer=None, stop_ids=[], resubmit_reward=-1.0)
    reward.generate_retries = lambda conversations, kw=None: list(retries.values())  # type: ignore[method-assign]
    asked = _reward_batch(texts)
    assert reward(**asked, failed_answer=["41"] * 4) == [-1.0, -1.0, 0.0, 1.0]
    assert [row["resubmits"] for row in reward.last] == [True, True, False, False]
    assert reward(**asked) == [0.0, 0.0, 0.0, 1.0]  # a dataset without the column: no rule
    assert RetryReward(tokenizer=None, stop_ids=[]).resubmit_reward is None  # off unless asked
    scoped = RetryReward(tokenizer=None, stop_ids=[], resubmit_reward=-1.0,
                         resubmit_scope="with_pass")  # fmt: skip
    scoped.generate_retries = lambda conversations, kw=None: list(retries.values())  # type: ignore[method-assign]
    assert scoped(**asked, failed_answer=["41"] * 4) == [-1.0, -1.0, 0.0, 1.0]  # "42" passed
    scoped.generate_retries = lambda conversations, kw=None: ["41", " 41.", "43", "44"]  # type: ignore[method-assign]
    assert scoped(**asked, failed_answer=["41"] * 4) == [0.0, 0.0, 0.0, 0.0]  # all failed
    reward.generate_retries = scoped.generate_retries  # type: ignore[method-assign]
    assert reward(**asked, failed_answer=["41"] * 4) == [-1.0, -1.0, 0.0, 0.0]  # scope "all"

    # Sampled groups: every first attempt is "41"; each retry answers its reflection.
    def reply(messages: list[dict[str, Any]]) -> str:
        if len(messages) == 1:
            return "41"
        if len(messages) == 3:  # problem, failed attempt, reflection instruction
            return next(reflections)
        said = next(t for t in texts if any(m.get("content") == t for m in messages))
        return retries[said]

    settings = load_settings(log_path=tmp_path / "x.jsonl")
    sums = ["What is 17 + 25?", "What is 20 + 22?", "What is 40 + 2?"]
    tasks = [math_task(prompt=p, id=f"t{i}") for i, p in enumerate(sums)]
    order = ["Add again.", "Carry the one.", "Add again.", "Say it again.", "It is 42.",
             "Add again."]  # fmt: skip

    def sample(out: str, resubmit: float | None, scope: str = "all") -> Any:
        nonlocal reflections
        reflections = iter(order)
        model = ScriptedModel(default=reply).model
        return sample_groups(tasks, model, tmp_path / out, k=2, settings=settings, concurrency=1,
                             resubmit_reward=resubmit, resubmit_scope=scope)  # fmt: skip

    reflections = iter(order)
    plain = sample("a.jsonl", None)
    # t0: a resubmission and a new wrong answer; t1: two resubmissions; t2: a pass and one.
    assert (plain.failures, plain.resubmitted, plain.retries_passed) == (3, 4, 1)
    assert (plain.learnable, plain.all_failed, plain.all_passed) == (1, 2, 0)
    paid = sample("b.jsonl", -1.0)
    assert (paid.resubmitted, paid.learnable, paid.all_failed) == (4, 2, 1)
    assert paid.second_try_rate == plain.second_try_rate  # the gate's score is unchanged
    # Only t2 has a passing retry: t0 and t1 stay groups of failures with equal rewards.
    scoped_report = sample("c.jsonl", -1.0, "with_pass")
    assert (scoped_report.resubmitted, scoped_report.learnable) == (4, 1)
    assert scoped_report.all_failed == 2

    # Offline, from the logged trajectories: the flag is read from each candidate's retry.
    examples, _, _ = build_failure_set([tmp_path / "a.jsonl"], holdout_fraction=0.0)
    by_task = {e.task_id: e for e in examples}
    assert [c["resubmits"] for c in by_task["t1"].group] == [True, True]
    assert by_task["t0"].row()["failed_answer"] == "41"  # the online column
    groups, skipped = _groups(examples)
    assert len(groups) == 1 and skipped["all rewards equal"] == 2
    groups, skipped = _groups(examples, resubmit_reward=-1.0)
    assert sorted(g.rewards for g in groups) == [[-1.0, 0.0], [1.0, -1.0]]
    assert skipped["all rewards equal"] == 1
    groups, skipped = _groups(examples, resubmit_reward=-1.0, resubmit_scope="with_pass")
    assert [g.rewards for g in groups] == [[1.0, -1.0]] and skipped["all rewards equal"] == 2


def test_a_reflection_that_carries_nothing_earns_the_hollow_reward(tmp_path: Path) -> None:
    """``hollow_reward``: a blank reflection, or one that restates the failed answer, earns that
    whatever its retry did and in every group, so a group of failures is learnable where some
    reflections say something, and a restatement ranks below a reflection with content even
    when its retry passed. One rule online, offline and in the round reports, which count such
    reflections either way (and whose gate score pays reflections as training does)."""
    from rrr_trainer import RRRTrainConfig
    from rrr_trainer.data import (
        build_failure_set,
        carries_something,
        hollow,
        reflection_reward,
        restates_problem,
    )
    from rrr_trainer.grpo import RetryReward
    from rrr_trainer.offline import _groups
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import ConfigError

    assert hollow("", "41") and hollow("  ", None) and hollow(" 41.", "41")
    assert not hollow("41 + 1 = 42", "41") and not hollow("41", None)  # no failed answer known
    assert carries_something([("t0", "41.", "41"), ("t1", "Add one.", "41")]) == [False, True]
    # run 76: the failed equation restated with a value, true or the target, carries nothing
    assert hollow("16 + 9 = 23", " 16 + 9") and hollow("16 + 9 = 25.", "16 + 9")
    assert not hollow("16 * 9 = 144", "16 + 9") and not hollow("16 + 9 = 25, not 23", "16 + 9")
    # run 77: the problem's own numbers line, one text per problem, carries nothing either
    problem = "Numbers: 52, 31\nTarget: 83\nEquation:"
    assert restates_problem("Numbers: 52, 31", problem) and restates_problem("target 83.", problem)
    assert hollow("Numbers: 52, 31", "52 * 31", (), problem) and not hollow("Numbers: 52, 31", "x")
    assert not restates_problem("52 + 31 = 83", problem) and not restates_problem("14, 9", problem)
    assert not restates_problem("", problem) and not restates_problem("Numbers: 52", None)
    rows = [("a", "Numbers: 52, 31", "52 * 31"), ("b", "52 + 31 = 83", "52 * 31")]
    assert carries_something(rows) == [True, True]
    assert carries_something(rows, {"a": problem, "b": problem}) == [False, True]
    assert reflection_reward("Numbers: 52, 31", 1.0, False, hollow_reward=-1.0) == 1.0
    assert (
        reflection_reward("Numbers: 52, 31", 1.0, False, hollow_reward=-1.0, task_text=problem)
        == -1.0
    )
    assert reflection_reward("41.", 1.0, False, failed_answer="41", hollow_reward=-1.0) == -1.0
    assert reflection_reward("", 0.0, True, failed_answer="41", hollow_reward=-0.5) == -0.5
    assert reflection_reward("41.", 1.0, False, failed_answer="41") == 1.0  # off unless asked
    assert reflection_reward("Add one.", 1.0, False, failed_answer="41", hollow_reward=-1.0) == 1.0
    # A phrase written for too many problems carries nothing either: 0 alone, hollow when paid.
    phrase = {"numbers are not the same"}
    assert reflection_reward("Numbers are not the same.", 1.0, False, phrase) == 0.0
    assert reflection_reward("Numbers are NOT the same", 1.0, False, phrase, failed_answer="41",
                             hollow_reward=-1.0) == -1.0  # fmt: skip
    assert reflection_reward("Add one.", 1.0, False, phrase, hollow_reward=-1.0) == 1.0
    with pytest.raises(ConfigError, match=r"hollow_reward \(1.0\) must be below 1"):
        RRRTrainConfig(hollow_reward=1.0).validate()

    reward = RetryReward(tokenizer=None, stop_ids=[], hollow_reward=-1.0)
    reward.generate_retries = lambda conversations, kw=None: ["43", "43", "43", "42"]  # type: ignore[method-assign]
    asked = _reward_batch(["41.", "", "Carry the one.", "It is 42."])
    assert reward(**asked, failed_answer=["41"] * 4) == [-1.0, -1.0, 0.0, 1.0]
    assert reward(**asked) == [0.0, -1.0, 0.0, 1.0]  # no failed-answer column: blanks only
    assert RetryReward(tokenizer=None, stop_ids=[]).hollow_reward is None  # off unless asked

    # Sampled groups: every first attempt is "41"; each retry follows its reflection.
    retries = {"41.": "43", "Carry the one.": "43", "41": "42", "It is 42.": "42"}
    order = ["41.", "Carry the one.", "41", "It is 42."]  # t0: both fail; t1: both pass

    def reply(messages: list[dict[str, Any]]) -> str:
        if len(messages) == 1:
            return "41"
        if len(messages) == 3:  # problem, failed attempt, reflection instruction
            return next(reflections)
        return retries[messages[3]["content"]]  # the reflection

    settings = load_settings(log_path=tmp_path / "x.jsonl")
    tasks = [math_task(prompt=p, id=f"t{i}") for i, p in enumerate(["17 + 25?", "20 + 22?"])]

    def sample(out: str, paid: float | None) -> Any:
        nonlocal reflections
        reflections = iter(order)
        model = ScriptedModel(default=reply).model
        return sample_groups(tasks, model, tmp_path / out, k=2, settings=settings, concurrency=1,
                             hollow_reward=paid)  # fmt: skip

    reflections = iter(order)
    plain = sample("a.jsonl", None)
    assert (plain.failures, plain.hollow, plain.resubmitted, plain.retries_passed) == (2, 2, 0, 2)
    assert (plain.learnable, plain.all_failed, plain.all_passed) == (0, 1, 1)
    paid = sample("b.jsonl", -1.0)
    assert (paid.hollow, paid.learnable, paid.all_failed, paid.all_passed) == (2, 2, 0, 0)
    assert paid.second_try_rate < plain.second_try_rate  # the restated pass is not paid

    # Offline, from the logged trajectories: the failed answer is each example's own.
    examples, _, _ = build_failure_set([tmp_path / "a.jsonl"], holdout_fraction=0.0)
    groups, skipped = _groups(examples)
    assert not groups and skipped["all rewards equal"] == 2
    groups, skipped = _groups(examples, hollow_reward=-1.0)
    assert sorted(g.rewards for g in groups) == [[-1.0, 0.0], [-1.0, 1.0]]


def test_the_question_of_a_task_is_its_last_user_message() -> None:
    """``Task.user_text()`` is the one reading of "the question": the trainer's claims check,
    the chat's Markdown export and the terminal chat's history all use it. Few-shot turns come
    before it; a multi-part message gives its text parts."""
    from rrr_agent import Message, Task

    spec = {"type": "exact", "expected": "42"}
    shots = [Message(role="user", content="1 + 1?"), Message(role="assistant", content="2")]
    task = Task(messages=[*shots, Message(role="user", content="17 + 25?")], verifier=spec)
    assert task.user_text() == "17 + 25?"
    parts = [{"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "17 + 25?"}]  # fmt: skip
    multi = Task(messages=[Message(role="user", content=parts)], verifier=spec)
    assert multi.user_text() == "What is\n17 + 25?"
    assert (
        Task(messages=[Message(role="system", content="be brief")], verifier=spec).user_text() == ""
    )
