"""Per-task rendering (``chat_template_kwargs``): the transcript template's completion style, the
engine sending it on every call, the family prompts of countdown2, and the trainer's handling."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rrr_agent import Engine, LoopOptions, Outcome, ScriptedModel, Task
from rrr_agent.embedded import chat_template, is_transcript_template
from rrr_agent.tasksets import get_taskset
from rrr_agent.testing import StubOpenAIServer, StubResponse

from .conftest import math_task


def render(messages: list[dict[str, Any]], **kwargs: Any) -> str:
    # The environment transformers uses for chat templates.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template: jinja2.Template = env.from_string(chat_template())
    return template.render(
        messages=messages, bos_token="<bos>", add_generation_prompt=True, tools=None, **kwargs
    )


def test_completion_style_drops_role_prefixes() -> None:
    messages = [
        {"role": "system", "content": "Rule.\n\nNumbers: 1, 2\nTarget: 3\nEquation: 1 + 2"},
        {"role": "user", "content": "Numbers: 4, 5\nTarget: 9\nEquation:"},
        {"role": "assistant", "content": "4 * 5"},
        {"role": "user", "content": "That was wrong. Reflection:"},
    ]
    assert render(messages, style="completion") == (
        "<bos>Rule.\n\nNumbers: 1, 2\nTarget: 3\nEquation: 1 + 2\n\n"
        "Numbers: 4, 5\nTarget: 9\nEquation: 4 * 5\nThat was wrong. Reflection:"
    )
    # Without the kwarg the same messages are a User/Assistant transcript.
    transcript = render(messages)
    assert "User: Numbers: 4, 5" in transcript and transcript.endswith("Assistant:")
    assert is_transcript_template(chat_template())
    assert not is_transcript_template("{{ messages }}") and not is_transcript_template(None)


def test_engine_sends_the_task_kwargs_on_every_call() -> None:
    task = math_task().model_copy(update={"chat_template_kwargs": {"style": "completion"}})
    plain = math_task()
    with StubOpenAIServer(
        [StubResponse(text="41"), StubResponse(text="I added wrong."),
         StubResponse(text="42"), StubResponse(text="42")]
    ) as srv:  # fmt: skip
        engine = Engine("hosted_vllm/m", api_base=srv.base_url, options=LoopOptions(max_retries=1))
        traj = engine.run_sync(task)
        assert traj.outcome is Outcome.PASSED_AFTER_RETRY
        engine.run_sync(plain)
        bodies = srv.requests
    assert len(bodies) == 4
    assert all(b["chat_template_kwargs"] == {"style": "completion"} for b in bodies[:3])
    assert "chat_template_kwargs" not in bodies[3]
    # The rendering is part of what defines the task, so it changes the content hash.
    assert task.content_hash() != plain.content_hash()
    assert Task.model_validate_json(traj.task.model_dump_json()).chat_template_kwargs == {
        "style": "completion"
    }


def test_countdown2_uses_its_family_prompts(scripted: ScriptedModel) -> None:
    task = next(iter(get_taskset("countdown2-test").load()))
    assert task.family == "countdown2" and task.chat_template_kwargs == {"style": "completion"}
    assert task.messages[-1].content.endswith("\nEquation:")
    scripted.add("1 + 1", "I should multiply.", "2 * 2")
    traj = Engine(scripted.model, options=LoopOptions(max_retries=1)).run_sync(task)
    assert traj.reflections[0].instruction == "That was wrong. Reflection:"
    assert traj.attempts[1].instruction == "Try again. Equation:"
    scripted.add("1 + 1", "2 * 2")
    plain = Engine(scripted.model, options=LoopOptions(reflect=False)).run_sync(task)
    assert plain.attempts[1].instruction == "That was wrong. Try again. Equation:"
    assert "plain_retry/countdown2" in plain.prompt_versions


def test_countdown2_demo_sets_show_a_reflection_in_the_family_prompts() -> None:
    from rrr_agent import PromptLibrary
    from rrr_agent.tasksets.countdown2 import (
        DEMO_REFLECTION_PROMPT,
        DEMO_RETRY_PROMPT,
        REFLECTION_DEMOS,
    )

    prompts = PromptLibrary()
    assert prompts.get("reflection", "countdown2").text == DEMO_REFLECTION_PROMPT
    assert prompts.get("retry", "countdown2").text == DEMO_RETRY_PROMPT
    plain = list(get_taskset("countdown2-test").load())[:20]
    demo = list(get_taskset("countdown2-demo-test").load())[:20]
    for p, d in zip(plain, demo, strict=True):  # the same problems, the same checks
        assert p.verifier == d.verifier and p.messages[-1] == d.messages[-1]
        assert d.family == "countdown2" and d.chat_template_kwargs == p.chat_template_kwargs
    system = str(demo[0].messages[0].content)
    assert system.startswith(str(plain[0].messages[0].content))
    block = ("Numbers: 96, 8\nTarget: 12\nEquation: 96 - 8\n"
             "That was wrong. Reflection: 96 - 8 = 88, not 12. 96 / 8 = 12.\n"
             "Try again. Equation: 96 / 8")  # fmt: skip
    assert block in system
    # No test problem is shown: the demonstrations use worked examples' numbers.
    problems = {(t.verifier.numbers[0], t.verifier.numbers[1], t.verifier.target)  # type: ignore[index]
                for t in get_taskset("countdown2-demo-test").load()}  # fmt: skip
    assert not problems & {(a, b, t) for a, b, t, *_ in REFLECTION_DEMOS}


def test_checked_reflection_writes_the_demonstrated_form_from_exact_arithmetic() -> None:
    """The program-written reflection (learning rounds' ``plain_branch_form="checked"``) is the
    demonstrations' own text for their failures, and reads any failed answer as the verifier
    does: a claimed value is checked, not believed; a value that is not whole gets two
    decimals; no check where the failed answer is no equation or divides by zero."""
    from rrr_agent.tasksets.countdown2 import REFLECTION_DEMOS, checked_reflection
    from rrr_agent.verifiers.countdown import CountdownError

    for _a, _b, target, wrong, reflection, right in REFLECTION_DEMOS:
        assert checked_reflection(wrong, right, target) == reflection
    assert checked_reflection(" 91 / 34", " 91 - 34", 57) == "91 / 34 = 2.68, not 57. 91 - 34 = 57."
    assert checked_reflection("16 + 9 = 23", "16 + 7", 23) == "16 + 9 = 25, not 23. 16 + 7 = 23."
    assert checked_reflection("35 - 39", "35+39 = 74", 74) == "35 - 39 = -4, not 74. 35+39 = 74."
    assert checked_reflection("50 / 4", "50 / 2", 25) == "50 / 4 = 12.5, not 25. 50 / 2 = 25."
    for unread in ("14, 9", "", None, "9 / 0", "__import__('os')"):
        assert checked_reflection(unread, "14 + 9", 23) == "14 + 9 = 23."
    with pytest.raises(CountdownError):
        checked_reflection("14 * 9", "14 + 9 = 24", 23)


def test_countdown2_shown_sets_demonstrate_the_plain_retry_as_well() -> None:
    """The -shown sets demonstrate both second turns, so the plain-retry control is as fairly
    prompted as the reflection: the -demo sets showed only reflections, and after the plain
    retry's words the model repeated itself."""
    from rrr_agent import PromptLibrary
    from rrr_agent.tasksets.countdown2 import DEMO_PLAIN_RETRY_PROMPT, PLAIN_RETRY_DEMOS

    assert PromptLibrary().get("plain_retry", "countdown2").text == DEMO_PLAIN_RETRY_PROMPT
    demo = list(get_taskset("countdown2-demo-test").load())[:20]
    shown = list(get_taskset("countdown2-shown-test").load())[:20]
    for d, s in zip(demo, shown, strict=True):
        assert d.verifier == s.verifier and d.messages[-1] == s.messages[-1]
        assert s.family == "countdown2" and s.metadata["generator"] == "countdown2-shown"
    system = str(shown[0].messages[0].content)
    plain = ("Numbers: 50, 2\nTarget: 25\nEquation: 50 - 2\n"
             "That was wrong. Try again. Equation: 50 / 2")  # fmt: skip
    assert plain in system and "Reflection: 96 - 8 = 88, not 12. 96 / 8 = 12." in system
    assert system.count("That was wrong. Reflection:") == system.count("Try again. Equation:") - 3
    # reflection and plain blocks alternate, so neither kind is always nearest the problem
    assert system.rindex("Reflection:") < system.rindex("That was wrong. Try again.")
    assert system.index("Reflection:") < system.index("That was wrong. Try again.")
    problems = {(t.verifier.numbers[0], t.verifier.numbers[1], t.verifier.target)  # type: ignore[index]
                for t in get_taskset("countdown2-shown-test").load()}  # fmt: skip
    assert not problems & {(a, b, t) for a, b, t, *_ in PLAIN_RETRY_DEMOS}
    train = {t.messages[-1].content for t in get_taskset("countdown2-shown-train").load()}
    assert not train & {t.messages[-1].content for t in get_taskset("countdown2-shown-test").load()}


def test_countdown2_splits_share_one_mix_of_operations() -> None:
    """Train and test are one shuffled pool, so held-out problems are drawn like training ones.
    The old splits generated train first: it took nearly all exact divisions (24 % of its first
    200 problems against 2.5 % of the held-out ones), and a trained model learned to divide."""
    from collections import Counter

    names = ("countdown2-train", "countdown2-test")
    loaded = {name: list(get_taskset(name).load()) for name in names}

    def mix(name: str, n: int) -> dict[str, float]:
        tasks = loaded[name][:n]
        ops = Counter(str(t.metadata["reference_equation"]).split()[1] for t in tasks)
        return {op: ops[op] / len(tasks) for op in "+-*/"}

    train, test = mix("countdown2-train", 2000), mix("countdown2-test", 400)
    for op in "+-*/":
        assert abs(train[op] - test[op]) < 0.05, (op, train, test)
    # the slices the learning benchmark uses (the first 200 of each) are no longer skewed
    head_train, head_test = mix("countdown2-train", 200), mix("countdown2-test", 200)
    assert head_test["/"] > 0.03 and 0.03 < head_train["/"] < 0.15, (head_train, head_test)
    problems = [(t.verifier.numbers[0], t.verifier.numbers[1], t.verifier.target)  # type: ignore[index]
                for tasks in loaded.values() for t in tasks]  # fmt: skip
    assert len(set(problems)) == len(problems) == 2400


def test_arithmetic_probe_answers_pass_and_are_distinct() -> None:
    from rrr_agent import build_verifier
    from rrr_agent._types import ModelOutput

    tasks = list(get_taskset("arithmetic-test").load())
    assert len(tasks) == 300 and len({t.content_hash() for t in tasks}) == 300
    for t in tasks[:50]:
        text = t.messages[-1].content
        a, op, b = text.split("\n")[0].removeprefix("Sum: ").split()
        answer = int(a) + int(b) if op == "+" else int(a) - int(b)
        verifier = build_verifier(t.verifier)
        assert verifier.verify(ModelOutput(text=f" {answer}"), t).passed  # type: ignore[union-attr]
        assert not verifier.verify(ModelOutput(text=f"{answer + 1}"), t).passed  # type: ignore[union-attr]


def test_arithmetic_train_never_repeats_a_test_sum() -> None:
    def sums(name: str) -> list[str]:
        return [t.messages[-1].content for t in get_taskset(name).load()]

    train, test = sums("arithmetic-train"), sums("arithmetic-test")
    assert len(train) == len(set(train)) == 1000
    assert not set(train) & set(test)
    assert all(t.family == "arithmetic" for t in get_taskset("arithmetic-train").load())
    from rrr_agent.tasksets.arithmetic import generate_sums

    with pytest.raises(ValueError, match="distinct sums are left"):  # never an endless search
        generate_sums(1, 1500)


def test_trainer_refuses_mixed_renderings() -> None:
    pytest.importorskip("trl")
    from rrr_trainer.data import FailureExample
    from rrr_trainer.grpo import shared_template_kwargs

    from rrr_agent import ConfigError

    def example(kw: dict[str, Any]) -> FailureExample:
        return FailureExample(task_json="{}", prompt=[], reflection_instruction="",
                              retry_instruction="", failed_answer="", task_id="t",
                              trajectory_id="x", chat_template_kwargs=kw)  # fmt: skip

    style = {"style": "completion"}
    assert shared_template_kwargs([example(style), example(dict(style))]) == style
    assert shared_template_kwargs([example({})]) == {}
    with pytest.raises(ConfigError, match="mixes tasks rendered differently"):
        shared_template_kwargs([example(style), example({})])
    assert json.loads(example(style).row()["template_kwargs"]) == style
