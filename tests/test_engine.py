"""The loop engine: order, stop conditions, prompts, feedback, k-groups, events, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from rrr_agent import (
    SCHEMA_VERSION,
    AttemptFinished,
    AttemptStarted,
    Engine,
    ErrorLog,
    Event,
    GroupFinished,
    Hooks,
    InfrastructureError,
    LoopOptions,
    ModelRequestError,
    ModelTimeout,
    Outcome,
    RateLimited,
    ReflectionFinished,
    ReflectionStarted,
    RetryPolicy,
    RetryStarted,
    RunFailed,
    RunFinished,
    RunStarted,
    SamplingParams,
    ScriptedError,
    ScriptedModel,
    ScriptedReply,
    ServerError,
    Task,
    Trajectory,
    TrajectoryStore,
    TransportRetry,
    VerificationFailed,
    Verified,
    VerifierError,
    VerifierSpecError,
    build_conversation,
    build_verifier,
    load_settings,
)

from .conftest import math_task

PAPER_TOOL_CALL = (
    "You tried performing the task, but failed in generating the correct tool call. Reflect on "
    "what went wrong and write a short explanation that will help you do better next time."
)
PAPER_MATH = (
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write "
    "a short explanation that will help you do better next time."
)
FAST = RetryPolicy(tries=3, base_delay_s=0.001, max_delay_s=0.01)


def engine_for(model: ScriptedModel, **kw: Any) -> Engine:
    kw.setdefault("retry_policy", FAST)
    return Engine(model.model, **kw)


def last_user(req_messages: list[dict[str, Any]]) -> str:
    return str([m for m in req_messages if m["role"] == "user"][-1]["content"])


# ------------------------------------------------------------------------------ order and stops


def test_first_try_pass_makes_one_call(scripted: ScriptedModel) -> None:
    scripted.add("42")
    traj = engine_for(scripted).run_sync(math_task())
    assert traj.outcome is Outcome.PASSED_FIRST_TRY
    assert len(scripted.requests) == 1
    assert [a.index for a in traj.attempts] == [0]
    assert traj.reflections == []
    assert traj.verdicts[0].passed and traj.verdicts[0].verifier == "exact"


def test_fail_reflect_retry_pass_in_same_conversation(scripted: ScriptedModel) -> None:
    scripted.add("32", "I carried wrong.", "42")
    task = math_task()
    traj = engine_for(scripted).run_sync(task)
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    assert len(scripted.requests) == 3
    first, reflect, retry = (r.messages for r in scripted.requests)
    assert first == task.openai_messages()
    # The reflection request continues the first conversation with the failed answer.
    assert reflect[: len(first)] == first
    assert reflect[len(first)] == {"role": "assistant", "content": "32"}
    assert reflect[-1] == {"role": "user", "content": PAPER_MATH}
    # The retry request continues the reflection request with the reflection and retry prompt.
    assert retry[: len(reflect)] == reflect
    assert retry[len(reflect)] == {"role": "assistant", "content": "I carried wrong."}
    assert retry[-1]["role"] == "user"
    assert traj.attempts[1].instruction == retry[-1]["content"]
    assert [v.passed for v in traj.verdicts] == [False, True]
    assert traj.reflections[0].text == "I carried wrong."
    assert traj.reflections[0].prompt_name == "reflection/math"
    # The stored record rebuilds exactly the conversation the model saw.
    assert traj.conversation() == [*retry, {"role": "assistant", "content": "42"}]


def test_fail_fail_stops_after_max_retries(scripted: ScriptedModel) -> None:
    scripted.add("1", "r1", "2")
    traj = engine_for(scripted).run_sync(math_task())
    assert traj.outcome is Outcome.FAILED
    assert len(scripted.requests) == 3
    assert scripted.remaining == 0


@pytest.mark.parametrize(("max_retries", "calls"), [(0, 1), (1, 3), (2, 5), (3, 7)])
def test_max_retries_bounds_calls(scripted: ScriptedModel, max_retries: int, calls: int) -> None:
    scripted.default = "wrong"
    traj = engine_for(scripted, options=LoopOptions(max_retries=max_retries)).run_sync(math_task())
    assert len(scripted.requests) == calls
    assert len(traj.attempts) == max_retries + 1
    assert len(traj.reflections) == max_retries
    assert traj.outcome is Outcome.FAILED


def test_stops_at_first_pass_even_with_retries_left(scripted: ScriptedModel) -> None:
    scripted.add("1", "r1", "42")
    scripted.default = "should not be asked"
    traj = engine_for(scripted, options=LoopOptions(max_retries=5)).run_sync(math_task())
    assert len(scripted.requests) == 3
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    assert traj.passed_within(2) and not traj.first_try_passed


def test_second_retry_sees_both_earlier_rounds(scripted: ScriptedModel) -> None:
    scripted.add("1", "r1", "2", "r2", "42")
    traj = engine_for(scripted, options=LoopOptions(max_retries=2)).run_sync(math_task())
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    last = scripted.requests[-1].messages
    contents = [m["content"] for m in last if m["role"] == "assistant"]
    assert contents == ["1", "r1", "2", "r2"]
    assert traj.conversation()[:-1] == last


# ------------------------------------------------------------------------------ prompts


def test_tool_call_family_uses_paper_prompt_and_tool_stubs(scripted: ScriptedModel) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    task = Task.from_prompt(
        "Weather in Paris?",
        {"type": "python", "path": "tests.helpers:called_with_city_paris"},
        family="tool_call",
        tools=tools,
    )
    scripted.add(
        ScriptedReply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}]),
        "I used the wrong city.",
        ScriptedReply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
    )
    traj = engine_for(scripted).run_sync(task)
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    reflect = scripted.requests[1]
    assert reflect.messages[-1] == {"role": "user", "content": PAPER_TOOL_CALL}
    stub = reflect.messages[-2]
    assert stub["role"] == "tool"
    assert stub["tool_call_id"] == traj.attempts[0].tool_calls[0].id  # type: ignore[index]
    # The reflection sees the tools but may not call one; attempts may.
    assert reflect.params.get("tool_choice") == "none"
    assert "tool_choice" not in scripted.requests[0].params
    assert scripted.requests[2].params.get("tools") == tools
    assert traj.conversation()[:-1] == scripted.requests[2].messages


def test_unknown_family_falls_back_to_default_prompt(scripted: ScriptedModel) -> None:
    scripted.add("no", "hmm", "42")
    task = Task.from_prompt("q", {"type": "exact", "expected": "42"}, family="poetry")
    traj = engine_for(scripted).run_sync(task)
    assert traj.reflections[0].prompt_name == "reflection/default"
    assert set(traj.prompt_versions) == {"reflection/default", "retry/default"}
    assert all(v.startswith("sha256:") for v in traj.prompt_versions.values())


def test_feedback_off_shows_only_the_paper_prompt(scripted: ScriptedModel) -> None:
    scripted.add("32", "r", "42")
    engine_for(scripted, options=LoopOptions(show_feedback=False)).run_sync(math_task())
    assert last_user(scripted.requests[1].messages) == PAPER_MATH


def test_feedback_on_prepends_verifier_feedback(scripted: ScriptedModel) -> None:
    scripted.add("32", "r", "42")
    traj = engine_for(scripted, options=LoopOptions(show_feedback=True)).run_sync(math_task())
    text = last_user(scripted.requests[1].messages)
    feedback = traj.verdicts[0].feedback
    assert feedback and feedback in text
    assert text.endswith(PAPER_MATH)
    assert "42" not in text  # the exact verifier's feedback does not leak the answer
    assert "feedback/default" in traj.prompt_versions


def test_sampling_params_reach_the_model(scripted: ScriptedModel) -> None:
    scripted.add("1", "r", "42")
    sampling = SamplingParams(
        temperature=0.7, max_tokens=64, reflection_max_tokens=16, reflection_temperature=1.0, seed=3
    )
    traj = engine_for(scripted, sampling=sampling).run_sync(math_task())
    attempt_params, reflect_params, retry_params = (r.params for r in scripted.requests)
    assert attempt_params["temperature"] == 0.7 and attempt_params["max_tokens"] == 64
    assert reflect_params["max_tokens"] == 16 and reflect_params["temperature"] == 1.0
    assert retry_params["temperature"] == 0.7
    assert retry_params["max_tokens"] == 64 and retry_params["seed"] == attempt_params["seed"]
    assert traj.sampling == sampling


# ------------------------------------------------------------------------------ k reflections


def test_k_group_logs_all_branches_with_rewards(scripted: ScriptedModel) -> None:
    task = math_task()

    def by_branch(messages: list[dict[str, Any]]) -> str:
        # Reflections: one per branch, told apart by arrival order; retries echo their reflection.
        last = messages[-1]["content"]
        if last == PAPER_MATH:
            asked = [r for r in scripted.requests if r.messages[-1]["content"] == PAPER_MATH]
            return f"reflection-{len(asked)}"
        reflection = messages[-2]["content"]
        return "42" if reflection in ("reflection-2", "reflection-3") else "7"

    scripted.add("1")
    scripted.default = by_branch
    traj = engine_for(scripted, options=LoopOptions(reflections=3)).run_sync(task)
    assert len(scripted.requests) == 1 + 3 + 3
    [group] = traj.groups
    assert group.after_attempt == 0
    assert [c.branch for c in group.candidates] == [0, 1, 2]
    assert sorted(group.rewards()) == [0.0, 1.0, 1.0]  # type: ignore[type-var]
    assert all(c.status == "completed" for c in group.candidates)
    chosen = group.candidates[group.chosen]
    assert chosen.reward == 1.0
    assert traj.reflections[0] == chosen.reflection
    assert traj.attempts[1] == chosen.retry
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    # Tokens of all branches are counted, not only the chosen one.
    assert traj.total_usage().total_tokens > sum(
        g.usage.total_tokens for g in [*traj.attempts, *traj.reflections]
    )


def test_k_group_first_success_by_completion_wins(scripted: ScriptedModel) -> None:
    # Branch 0 passes slowly, branch 1 passes fast: the fast one is chosen.
    replies = {"slow": ScriptedReply(text="42", delay_s=0.3), "fast": ScriptedReply(text="42")}
    reflections = iter(["slow", "fast"])

    def reply(messages: list[dict[str, Any]]) -> Any:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        return replies[messages[-2]["content"]]

    scripted.add("1")
    scripted.default = reply
    traj = engine_for(scripted, options=LoopOptions(reflections=2)).run_sync(math_task())
    group = traj.groups[0]
    assert group.rewards() == [1.0, 1.0]
    assert group.chosen == 1
    assert traj.reflections[0].text == "fast"


def test_k_group_cancel_on_success(scripted: ScriptedModel) -> None:
    reflections = iter(["slow", "fast"])

    def reply(messages: list[dict[str, Any]]) -> Any:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        if messages[-2]["content"] == "slow":
            return ScriptedReply(text="7", delay_s=2.0)
        return "42"

    scripted.add("1")
    scripted.default = reply
    options = LoopOptions(reflections=2, cancel_on_success=True)
    traj = engine_for(scripted, options=options).run_sync(math_task())
    group = traj.groups[0]
    assert group.chosen == 1
    assert group.candidates[0].status == "cancelled"
    assert group.candidates[0].reward is None


def test_k_group_none_passes_continues_with_lowest_branch(scripted: ScriptedModel) -> None:
    scripted.default = "wrong"
    traj = engine_for(scripted, options=LoopOptions(reflections=4)).run_sync(math_task())
    assert traj.groups[0].rewards() == [0.0] * 4
    assert traj.groups[0].chosen == 0
    assert traj.outcome is Outcome.FAILED


def test_k_group_branches_and_tasks_get_distinct_seeds(scripted: ScriptedModel) -> None:
    """A server that seeds each request (vLLM) draws one random stream per seed: k branches with
    one seed would be k copies of one reflection, and every task's branch b with one seed the
    same draws on every problem (learning run 72: one text for all 109 problems on two of the
    base model's eight branches). Seeds mix the run's seed, the task's id and the branch, and a
    rerun sends the same ones."""
    scripted.default = "wrong"
    sampling = SamplingParams(temperature=0.0, reflection_temperature=1.0, seed=7)
    engine = engine_for(scripted, options=LoopOptions(reflections=3), sampling=sampling)

    def seeds(task: Task) -> tuple[int, list[int]]:
        scripted.requests.clear()
        engine.run_sync(task)
        hot = [r.params["seed"] for r in scripted.requests if r.params.get("temperature") == 1.0]
        return scripted.requests[0].params["seed"], sorted(hot)

    first, branches = seeds(math_task(id="a"))
    assert len(set(branches)) == 3 and first in branches  # the first attempt is branch 0's
    assert all(0 <= s < 2**31 for s in branches)  # a 31-bit seed every server accepts
    other_first, other = seeds(math_task(id="b"))
    assert not set(other) & set(branches) and other_first != first
    assert seeds(math_task(id="a")) == (first, branches)  # a rerun repeats every sample
    engine = engine_for(scripted, options=LoopOptions(reflections=3),
                        sampling=sampling.model_copy(update={"seed": 8}))  # fmt: skip
    assert not set(seeds(math_task(id="a"))[1]) & set(branches)  # another run's seed


def test_greedy_branch_writes_branch_zero_at_temperature_zero(scripted: ScriptedModel) -> None:
    """``reflection_greedy_branch``: branch 0 of a group is the greedy reflection, the text a
    greedy evaluation reads; the other branches keep the reflection temperature, and attempts
    and retries their own."""
    scripted.default = "wrong"
    sampling = SamplingParams(
        temperature=0.2, reflection_temperature=1.0, reflection_greedy_branch=True, seed=7
    )
    traj = engine_for(scripted, options=LoopOptions(reflections=3), sampling=sampling).run_sync(
        math_task()
    )
    asked = [r.params for r in scripted.requests if r.messages[-1]["content"] == PAPER_MATH]
    assert sorted(p["temperature"] for p in asked) == [0.0, 1.0, 1.0]
    others = [r.params for r in scripted.requests if r.messages[-1]["content"] != PAPER_MATH]
    assert {p["temperature"] for p in others} == {0.2}  # the first attempt and the 3 retries
    assert traj.sampling.reflection_greedy_branch
    assert sampling.request_params(reflection=True, branch=0)["temperature"] == 0.0
    assert sampling.request_params(reflection=True, branch=1)["temperature"] == 1.0
    assert sampling.request_params(branch=0)["temperature"] == 0.2
    settings_sampling = load_settings(reflection_greedy_branch=True).sampling()
    assert settings_sampling.reflection_greedy_branch


def test_k_group_branch_infra_error_is_not_a_reward(scripted: ScriptedModel) -> None:
    reflections = iter(["rA", "rB"])

    def reply(messages: list[dict[str, Any]]) -> Any:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        # Branch with reflection rA never gets its retry answered: an infrastructure failure.
        return ScriptedError("server") if messages[-2]["content"] == "rA" else "7"

    scripted.add("1")
    scripted.default = reply
    traj = engine_for(scripted, options=LoopOptions(reflections=2)).run_sync(math_task())
    statuses = sorted(c.status for c in traj.groups[0].candidates)
    assert statuses == ["completed", "error"]
    errored = next(c for c in traj.groups[0].candidates if c.status == "error")
    assert errored.reward is None and "ServerError" in (errored.error or "")


# ------------------------------------------------------------------------------ infrastructure


def test_transient_server_error_is_retried_and_not_recorded(scripted: ScriptedModel) -> None:
    scripted.add(ScriptedError("server"), ScriptedError("rate_limit"), "42")
    events: list[Event] = []
    traj = engine_for(scripted).run_sync(math_task(), on_event=events.append)
    assert traj.outcome is Outcome.PASSED_FIRST_TRY
    assert len(traj.attempts) == 1  # failures of the transport never become attempts
    retries = [e for e in events if isinstance(e, TransportRetry)]
    assert [e.error_type for e in retries] == ["ServerError", "RateLimited"]


@pytest.mark.parametrize(
    ("kind", "error"),
    [("server", ServerError), ("rate_limit", RateLimited), ("timeout", ModelTimeout)],
)
def test_persistent_infra_error_raises_and_logs_nothing(
    scripted: ScriptedModel, tmp_path: Any, kind: Any, error: type[Exception]
) -> None:
    scripted.default = ScriptedError(kind)
    store = TrajectoryStore(tmp_path / "t.jsonl")
    errors = ErrorLog(tmp_path / "e.jsonl")
    engine = engine_for(scripted, store=store, error_log=errors)
    with pytest.raises(error):
        engine.run_sync(math_task())
    assert len(scripted.requests) == FAST.tries
    assert list(store.read()) == []
    [row] = list(errors.read())
    assert row["error_type"] == error.__name__ and row["stage"] == "attempt"


def test_infra_error_during_reflection_discards_the_failed_attempt(
    scripted: ScriptedModel, tmp_path: Any
) -> None:
    # The first attempt genuinely failed, but the run could not finish: nothing is logged as data.
    scripted.add("32")
    scripted.default = ScriptedError("server")
    store = TrajectoryStore(tmp_path / "t.jsonl")
    errors = ErrorLog(tmp_path / "e.jsonl")
    with pytest.raises(ServerError):
        engine_for(scripted, store=store, error_log=errors).run_sync(math_task())
    assert list(store.read()) == []
    assert [r["stage"] for r in errors.read()] == ["reflection"]


def test_bad_request_is_not_retried(scripted: ScriptedModel) -> None:
    scripted.default = ScriptedError("bad_request")
    with pytest.raises(ModelRequestError):
        engine_for(scripted).run_sync(math_task())
    assert len(scripted.requests) == 1


def test_per_call_timeout(scripted: ScriptedModel) -> None:
    scripted.default = ScriptedReply(text="42", delay_s=5.0)
    engine = engine_for(
        scripted, timeout_s=0.05, retry_policy=RetryPolicy(tries=2, base_delay_s=0.001)
    )
    with pytest.raises(ModelTimeout):
        engine.run_sync(math_task())
    assert len(scripted.requests) == 2


def test_verifier_crash_is_an_error_not_a_failure(tmp_path: Any, scripted: ScriptedModel) -> None:
    scripted.add("42")
    task = Task.from_prompt("q", {"type": "python", "path": "tests.helpers:crashes"})
    store = TrajectoryStore(tmp_path / "t.jsonl")
    with pytest.raises(VerifierError, match="ZeroDivisionError"):
        engine_for(scripted, store=store).run_sync(task)
    assert list(store.read()) == []


def test_bad_spec_fails_before_any_model_call(scripted: ScriptedModel) -> None:
    with pytest.raises(VerifierSpecError, match="unknown verifier type"):
        engine_for(scripted).run_sync(Task.from_prompt("q", {"type": "nope"}))
    assert scripted.requests == []


# ------------------------------------------------------------------------------ events and API


def test_event_order_for_one_retry(scripted: ScriptedModel) -> None:
    scripted.add("1", "r", "42")
    hooks = Hooks(raise_errors=True)
    seen: list[str] = []
    hooks.on(Event, lambda e: seen.append(e.name))
    traj = engine_for(scripted, hooks=hooks).run_sync(math_task())
    assert seen == [
        "RunStarted",
        "AttemptStarted",
        "AttemptFinished",
        "Verified",
        "ReflectionStarted",
        "ReflectionFinished",
        "RetryStarted",
        "AttemptFinished",
        "Verified",
        "RunFinished",
    ]
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY


async def test_typed_and_async_hooks(scripted: ScriptedModel) -> None:
    scripted.add("1", "r", "42")
    hooks = Hooks(raise_errors=True)
    verdicts: list[bool] = []
    starts: list[int] = []

    @hooks(Verified)
    async def on_verdict(e: Verified) -> None:
        await asyncio.sleep(0)
        verdicts.append(e.verdict.passed)

    hooks.on(AttemptStarted, lambda e: starts.append(e.index))  # RetryStarted is an AttemptStarted
    await engine_for(scripted, hooks=hooks).run(math_task())
    assert verdicts == [False, True]
    assert starts == [0, 1]


def test_broken_hook_does_not_lose_the_run(scripted: ScriptedModel, tmp_path: Any) -> None:
    scripted.add("42")
    hooks = Hooks()

    def boom(e: Event) -> None:
        raise RuntimeError("progress bar broke")

    hooks.on(Event, boom)
    store = TrajectoryStore(tmp_path / "t.jsonl")
    engine_for(scripted, hooks=hooks, store=store).run_sync(math_task())
    assert len(list(store.read())) == 1
    assert hooks.errors >= 3


async def test_stream_yields_events_then_ends(scripted: ScriptedModel) -> None:
    scripted.add("1", "r", "42")
    names = [e.name async for e in engine_for(scripted).stream(math_task())]
    assert names[0] == "RunStarted" and names[-1] == "RunFinished"
    assert "ReflectionFinished" in names


async def test_stream_reraises_infra_error_after_run_failed(scripted: ScriptedModel) -> None:
    scripted.default = ScriptedError("server")
    names: list[str] = []

    async def consume() -> None:
        async for e in engine_for(scripted).stream(math_task()):
            names.append(e.name)

    with pytest.raises(ServerError):
        await consume()
    assert names[-1] == "RunFailed"


async def test_run_sync_inside_loop_is_refused(scripted: ScriptedModel) -> None:
    with pytest.raises(RuntimeError, match=r"await engine\.run"):
        engine_for(scripted).run_sync(math_task())


def test_raise_on_failure_carries_trajectory(scripted: ScriptedModel) -> None:
    scripted.add("1", "r", "2")
    with pytest.raises(VerificationFailed) as info:
        engine_for(scripted).run_sync(math_task(), raise_on_failure=True)
    traj = info.value.trajectory
    assert len(traj.attempts) == 2
    assert "2 attempt(s)" in str(info.value)
    assert str(traj.total_usage().total_tokens) in str(info.value)


def test_run_many_concurrency_and_per_task_errors(scripted: ScriptedModel, tmp_path: Any) -> None:
    tasks = [math_task(str(i), prompt=f"p{i}") for i in range(12)]

    in_flight = {"now": 0, "max": 0}

    def reply(messages: list[dict[str, Any]]) -> Any:
        prompt = messages[0]["content"]
        if prompt == "p5":
            return ScriptedError("server")
        return ScriptedReply(text=prompt[1:], delay_s=0.02)

    scripted.default = reply
    hooks = Hooks(raise_errors=True)

    def track(e: Event) -> None:
        if isinstance(e, RunStarted):
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        elif isinstance(e, RunFinished | RunFailed):
            in_flight["now"] -= 1

    hooks.on(Event, track)
    store = TrajectoryStore(tmp_path / "t.jsonl")
    engine = engine_for(scripted, hooks=hooks, store=store)
    results = engine.run_many_sync(tasks, concurrency=4)
    assert len(results) == 12
    failed = [r for r in results if not r.ok]
    assert [r.task.messages[0].content for r in failed] == ["p5"]
    assert isinstance(failed[0].error, InfrastructureError)
    assert in_flight["max"] == 4
    logged = list(store.read())
    assert len(logged) == 11
    assert "p5" not in {t.task.messages[0].content for t in logged}


def test_trajectory_roundtrip_and_verifier_rebuilt_from_log(
    scripted: ScriptedModel, tmp_path: Any
) -> None:
    scripted.add("32", "carry", "42")
    store = TrajectoryStore(tmp_path / "t.jsonl")
    traj = engine_for(scripted, store=store, model_revision="rev-1").run_sync(math_task())
    [loaded] = list(store.read())
    assert loaded == traj
    assert loaded.model == scripted.model and loaded.model_revision == "rev-1"
    assert loaded.response_model == scripted.model
    assert loaded.rrr_version
    raw = json.loads((tmp_path / "t.jsonl").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 3 and raw["kind"] == "trajectory"
    assert raw["reflections"][0]["given"] is False  # written by the model
    # A version-2 record (before ``Reflection.given``) reads as written by the model.
    old = {**raw, "schema_version": 2}
    old["reflections"] = [{k: v for k, v in r.items() if k != "given"} for r in raw["reflections"]]
    assert Trajectory.model_validate(old).reflections[0].given is False
    # The trainer can rebuild the judge from the record alone and get the same verdicts.
    verifier = build_verifier(loaded.task.verifier)
    for attempt, verdict in zip(loaded.attempts, loaded.verdicts, strict=True):
        assert verifier.verify(attempt.as_output(), loaded.task).passed == verdict.passed  # type: ignore[union-attr]
    assert (
        build_conversation(loaded.task, loaded.attempts, loaded.reflections) == traj.conversation()
    )


def test_direct_client_and_litellm_string_agree() -> None:
    task = math_task()
    a = ScriptedModel(["1", "r", "42"])
    b = ScriptedModel(["1", "r", "42"])
    via_litellm = Engine(a.model, retry_policy=FAST).run_sync(task)
    direct = Engine(b, retry_policy=FAST).run_sync(task)
    assert [x.text for x in via_litellm.attempts] == [x.text for x in direct.attempts]
    assert via_litellm.outcome == direct.outcome == Outcome.PASSED_AFTER_RETRY
    assert a.requests[2].messages == b.requests[2].messages


def test_usage_is_summed_across_attempts_and_reflections(scripted: ScriptedModel) -> None:
    scripted.add("one two", "three four five", "42")
    traj = engine_for(scripted).run_sync(math_task())
    stages = traj.usage_by_stage()
    assert stages["first_attempt"].completion_tokens == 2
    assert stages["reflections"].completion_tokens == 3
    assert stages["retries"].completion_tokens == 1
    assert traj.total_usage().completion_tokens == 6


def test_trajectory_rejects_newer_schema() -> None:
    with pytest.raises(ValueError, match="newer than this rrr understands"):
        Trajectory.model_validate(
            {"schema_version": 99, "task": math_task().model_dump(), "model": "m"}
        )


def test_group_and_events_to_dict(scripted: ScriptedModel) -> None:
    scripted.add("1")
    scripted.default = "wrong"
    events: list[Event] = []
    engine_for(scripted, options=LoopOptions(reflections=2)).run_sync(
        math_task(), on_event=events.append
    )
    group_events = [e for e in events if isinstance(e, GroupFinished)]
    assert len(group_events) == 1
    data = json.loads(json.dumps(group_events[0].to_dict()))
    assert data["event"] == "GroupFinished" and len(data["group"]["candidates"]) == 2
    assert sum(isinstance(e, ReflectionStarted) for e in events) == 2
    assert sum(isinstance(e, ReflectionFinished) for e in events) == 2
    assert sum(isinstance(e, RetryStarted) for e in events) == 2
    assert sum(isinstance(e, AttemptFinished) for e in events) == 3


def test_judge_infrastructure_error_stays_infrastructure(
    scripted: ScriptedModel, tmp_path: Any
) -> None:
    # A judge that cannot reach its model must not look like a verifier bug or a failed answer.
    judge = ScriptedModel(default=ScriptedError("server"))
    task = Task.from_prompt(
        "q", {"type": "llm_judge", "model": judge.model, "criteria": "says hi", "tries": 1}
    )
    scripted.add("hi")
    store = TrajectoryStore(tmp_path / "t.jsonl")
    with pytest.raises(ServerError):
        engine_for(scripted, store=store).run_sync(task)
    assert list(store.read()) == []
    judge.close()


def test_plain_retry_control_has_no_reflection(scripted: ScriptedModel) -> None:
    scripted.add("32", "42")
    traj = engine_for(scripted, options=LoopOptions(reflect=False)).run_sync(math_task())
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    assert len(scripted.requests) == 2 and traj.reflections == []
    retry = scripted.requests[1].messages
    assert retry[-2] == {"role": "assistant", "content": "32"}
    assert retry[-1] == {"role": "user", "content": "That was wrong. Try again."}
    assert traj.conversation()[:-1] == retry
    assert "plain_retry/default" in traj.prompt_versions
    assert "reflection/math" not in traj.prompt_versions


def test_plain_retry_with_tool_calls_keeps_tool_stubs(scripted: ScriptedModel) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    task = Task.from_prompt("call f", {"type": "python", "path": "tests.helpers:is_upper"},
                            tools=tools, family="tool_call")  # fmt: skip
    scripted.add(ScriptedReply(tool_calls=[{"name": "f", "arguments": {}}]), "OK")
    traj = engine_for(scripted, options=LoopOptions(reflect=False)).run_sync(task)
    retry = scripted.requests[1].messages
    assert [m["role"] for m in retry[-3:]] == ["assistant", "tool", "user"]
    assert traj.conversation()[:-1] == retry


def test_plain_retry_refuses_k_branches() -> None:
    with pytest.raises(ValueError, match="must be 1 when reflect is False"):
        LoopOptions(reflect=False, reflections=3)
