"""The training set, built from trajectory logs alone (no original program needed).

A logged trajectory becomes a training example when its first attempt failed and its verifier
spec can be rebuilt. The example's prompt is the conversation up to and including the reflection
instruction, built by the same code the engine uses (``reflection_messages``), with the reflection
and retry instructions exactly as logged. Examples are deduplicated on (task content, failed
answer), and tasks are split into train and held-out by a hash of the task id, so one task never
lands on both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from rrr_agent import (
    LogFileError,
    ModelOutput,
    PromptLibrary,
    ReadReport,
    Task,
    Trajectory,
    TrajectoryFilter,
    VerifierSpecError,
    build_verifier,
    read_trajectories,
    reflection_messages,
)
from rrr_agent.verifiers.countdown import normalize_operators

__all__ = ["DataReport", "FailureExample", "build_failure_set", "split_of"]


_NON_WORD = re.compile(r"[\W_]+")


@dataclass(slots=True)
class FailureExample:
    task_json: str
    prompt: list[dict[str, Any]]  # conversation ending with the reflection instruction
    reflection_instruction: str
    retry_instruction: str
    failed_answer: str
    task_id: str
    trajectory_id: str
    #: The task's chat_template_kwargs (rendering style), applied wherever the prompt is rendered.
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # Logged k-reflection group (offline mode): reflections, rewards, logged log-probs.
    group: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "task": self.task_json,
            "retry_instruction": self.retry_instruction,
            "failed_answer": self.failed_answer,
            "task_id": self.task_id,
            # JSON text: a dict column would become an Arrow struct with a fixed set of keys.
            "template_kwargs": json.dumps(self.chat_template_kwargs, sort_keys=True),
        }


@dataclass(slots=True)
class DataReport:
    trajectories: int = 0
    failures: int = 0
    train: int = 0
    heldout: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: list[str] = field(default_factory=list)
    tasks_train: int = 0
    tasks_heldout: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trajectories": self.trajectories,
            "first_attempt_failures": self.failures,
            "train_examples": self.train,
            "heldout_examples": self.heldout,
            "train_tasks": self.tasks_train,
            "heldout_tasks": self.tasks_heldout,
            "skipped": dict(self.skipped),
            "unreadable_lines": self.bad_lines,
        }


def reflection_reward(
    reflection: str | None,
    retry_reward: float,
    reward_blank: bool,
    repeated: Collection[str] = (),
    task_text: str | None = None,
    resubmitted: bool = False,
    resubmit_reward: float | None = None,
    *,
    failed_answer: str | None = None,
    hollow_reward: float | None = None,
    true_claims: bool = False,
) -> float:
    """The reward a reflection earns: its retry's, except that a reflection must carry something.
    A blank reflection earns 0 unless ``reward_blank``, and so does one whose
    :func:`reflection_key` is in ``repeated`` (the same text written for many different problems,
    see :func:`repeated_reflections`). With ``true_claims`` and ``task_text`` (the problem's
    text, see :meth:`Task.user_text`), a reflection also earns 0 unless it states a true
    equation over the problem's own numbers and no false one (:func:`equation_claims`). With
    ``resubmit_reward``, a reflection whose retry failed by resubmitting the failed answer
    (``resubmitted``, see :func:`resubmits`) earns that instead, before every other rule: the
    worst thing a reflection can lead to. With ``hollow_reward``, a reflection that carries
    nothing, blank, the failed answer (``failed_answer``) restated (:func:`hollow`), a text in
    ``repeated``, or, given ``task_text``, only the problem restated, earns that whatever its
    retry did and in every group, before every other rule: such a text cannot tell the retry
    anything about its problem. Learning run 71's trained model restated the failed answer in
    45 of 59 held-out reflections; run 72's, where only blanks and restatements cost, wrote one
    phrase for 76 of 77. Online, offline and the round reports all apply this one rule."""
    if hollow_reward is not None and hollow(reflection, failed_answer, repeated, task_text):
        return hollow_reward
    if resubmit_reward is not None and resubmitted and retry_reward < 1.0:
        return resubmit_reward
    if not (reward_blank or (reflection or "").strip()):
        return 0.0
    if repeated and reflection_key(reflection) in repeated:
        return 0.0
    if true_claims and task_text is not None:
        true, false = equation_claims(reflection, task_text)
        if false or not true:
            return 0.0
    return retry_reward


def text_passes(task: Task, text: str) -> bool:
    """Whether ``text`` passes as the task's answer, by its verifier's one sync judgement: a
    retry online, and a reflection read as an answer (the online metric and the benchmark's
    held-out count)."""
    return build_verifier(task.verifier).judge_sync(ModelOutput(text=text), task).passed


def scoped_resubmit_reward(
    resubmit_reward: float | None, scope: str, retry_rewards: Collection[float]
) -> float | None:
    """The ``resubmit_reward`` one group's reflections are scored with (:func:`reflection_reward`):
    itself with ``scope`` 'all'; with 'with_pass' only where some retry of the group
    (``retry_rewards``) passed, and None (off) elsewhere, so that the rule ranks a resubmission
    below the group's other failures but never makes a group of failures learnable by itself."""
    if resubmit_reward is None or scope == "all":
        return resubmit_reward
    return resubmit_reward if any(r >= 1.0 for r in retry_rewards) else None


_NUMBER = r"\d+(?:\.\d+)?"
#: "a op b = c" once operators are normalised as the Countdown verifier reads them (× ÷ − –
#: and LaTeX), and "x" for times: operands unsigned, the result may be negative ("34 - 91 = -57").
_EQUATION = re.compile(
    rf"(?<![\w.])({_NUMBER})\s*([-+*/xX])\s*({_NUMBER})\s*=\s*(-?{_NUMBER})(?![\w])"
)


def equation_claims(reflection: str | None, problem: str) -> tuple[int, int]:
    """The equations ``a op b = c`` a reflection states, checked by arithmetic (never ``eval``):
    (true ones whose operands ``a`` and ``b`` are both numbers of ``problem``, false ones). A
    result with decimals is true when it is the exact result rounded to that many places.
    Operators are read as the Countdown verifier reads them (:func:`normalize_operators`)."""
    given = {Fraction(n) for n in re.findall(_NUMBER, problem)}
    true = false = 0
    for a_text, op, b_text, c_text in _EQUATION.findall(normalize_operators(reflection or "")):
        a, b, c = Fraction(a_text), Fraction(b_text), Fraction(c_text)
        if op == "/" and b == 0:
            false += 1
            continue
        exact = {"+": a + b, "-": a - b, "/": a / b}.get(op, a * b)
        places = len(c_text.partition(".")[2])
        holds = exact == c if not places else abs(exact - c) <= Fraction(1, 2 * 10**places)
        if not holds:
            false += 1
        elif a in given and b in given:
            true += 1
    return true, false


#: An arithmetic answer, optionally with a value claimed for it ("16 + 9 = 23"): numbers,
#: operators (as the Countdown verifier writes them) and parentheses, starting with a digit,
#: a sign or a parenthesis, so code such as "x = 5" never matches.
_ARITHMETIC_ANSWER = re.compile(
    r"^(?P<expr>[\d(\-−–][\d\s.+\-*/xX×÷−–·()]*?)\s*(?:=+\s*-?\s*\d+(?:\.\d+)?)?$"
)


def answer_key(text: str | None) -> str:
    """An answer's text as :func:`resubmits` compares it: spacing and a trailing period ignored,
    everything else (operators, case, digits) kept: "91 / 34" and " 91 / 34." are one answer,
    "91 - 34" another. An arithmetic answer is read as the Countdown verifier reads it: a value
    claimed after it is dropped and spacing inside it does not count, so "16 + 9 = 23",
    "16+9" and "16 + 9" are one answer. Run 76's trained model restated its failed "16 + 9" as
    "16 + 9 = 23" in 32 of 68 held-out reflections, and the retry resubmitted it; compared as
    whole texts, neither counted as a restatement."""
    key = " ".join((text or "").split()).rstrip(".").rstrip()
    expr = _arithmetic_expression(key)
    return key if expr is None else "".join(expr.split())


def _arithmetic_expression(answer: str) -> str | None:
    """The expression of an arithmetic answer (one with a digit), a value claimed after it
    dropped; None for any other text (:data:`_ARITHMETIC_ANSWER`)."""
    arithmetic = _ARITHMETIC_ANSWER.match(answer)
    if arithmetic and re.search(r"\d", arithmetic.group("expr")):
        return arithmetic.group("expr")
    return None


def bare_answer(text: str | None) -> str:
    """An answer alone, as the follow term's 'bare' form reads a retry: an arithmetic answer
    without a value claimed after it or a trailing period, its own spacing kept ("91 - 34 = 57."
    is "91 - 34"); any other text stripped and otherwise as written. The Countdown verifier fails
    an answer whose claimed value is not the target, and a retry copies its reflection's claim."""
    stripped = (text or "").strip()
    expr = _arithmetic_expression(stripped.rstrip(".").rstrip())
    return stripped if expr is None else expr.strip()


def resubmits(retry: str | None, failed: str | None) -> bool:
    """Whether a retry resubmits the failed answer it follows (:func:`answer_key`; a blank
    answer is never a resubmission). Held-out, runs 25 and 26's trained models did so after 28
    of 75 and 43 of 80 reflections; the vanilla model after none of 106."""
    key = answer_key(retry)
    return bool(key) and key == answer_key(failed)


#: Words, numbers and operators, the units :func:`restates_problem` compares.
_TOKEN = re.compile(r"[^\W\d_]+|\d+(?:\.\d+)?|[-+*/=]")


def restates_problem(reflection: str | None, problem: str | None) -> bool:
    """Whether a reflection only restates its problem: every word, number and operator in it
    (case ignored, operators read as :func:`normalize_operators` reads them) is already in the
    problem's text (:meth:`Task.user_text`). "Numbers: 52, 31" for "Numbers: 52, 31 Target: 83"
    does; "52 + 31 = 83" does not (the problem has no operator), nor does "14, 9". Learning run
    77's trained model wrote the problem's numbers line for 61 of 68 held-out failures, one text
    per problem, so the repeats rule did not see it. Blank or without a problem: False."""
    words = set(_TOKEN.findall(normalize_operators((reflection or "").lower())))
    if not words or not problem:
        return False
    return words <= set(_TOKEN.findall(normalize_operators(problem.lower())))


def hollow(
    reflection: str | None,
    failed: str | None,
    repeated: Collection[str] = (),
    problem: str | None = None,
) -> bool:
    """Whether a reflection carries nothing: it is blank (:func:`reflection_key`), it restates
    the failed answer it follows (:func:`resubmits`), its key is in ``repeated`` (a text
    written for too many problems, :func:`repeated_reflections`), or, given the ``problem``'s
    text, it only restates the problem (:func:`restates_problem`). The rule behind
    ``hollow_reward`` (with ``max_reflection_repeats``'s texts) and :func:`carries_something`."""
    key = reflection_key(reflection)
    return (
        not key
        or key in repeated
        or resubmits(reflection, failed)
        or restates_problem(reflection, problem)
    )


def reflection_key(text: str | None) -> str:
    """A reflection's text with case, spacing and punctuation ignored: "Numbers are the same." and
    "numbers are the same" are one text. Digits are kept, so reflections that name the problem's
    own numbers differ between problems."""
    return " ".join(_NON_WORD.sub(" ", (text or "").lower()).split())


class RepeatCounter:
    """The running count behind :func:`repeated_reflections`: which problems each reflection text
    was written for, kept as rows arrive. Online training adds each step's completions, so the
    work per step is the step's own rows, not the whole run's."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._problems: dict[str, set[str]] = {}
        self._repeated: set[str] = set()

    def add(self, rows: Iterable[tuple[str, str | None]]) -> frozenset[str]:
        """Count ``rows`` (task id, reflection text) and return the texts now over the limit."""
        if self.limit <= 0:
            return frozenset()
        for task_id, text in rows:
            key = reflection_key(text)
            if not key:
                continue
            ids = self._problems.setdefault(key, set())
            ids.add(task_id)
            if len(ids) > self.limit:
                self._repeated.add(key)
        return self.repeated

    @property
    def repeated(self) -> frozenset[str]:
        return frozenset(self._repeated)


def repeated_reflections(rows: Iterable[tuple[str, str | None]], limit: int) -> frozenset[str]:
    """The :func:`reflection_key` of every text written for more than ``limit`` different problems.

    ``rows`` holds (task id, reflection text) pairs. A text that recurs across problems is not a
    function of the problem, so it cannot tell the retry anything about it: run 12's trained model
    wrote "Numbers are the same." after every failure. ``limit`` 0 turns the rule off; blank
    reflections are left to the blank rule."""
    return RepeatCounter(limit).add(rows)


def carries_something(
    rows: Iterable[tuple[str, str | None, str | None]],
    problems: Mapping[str, str] | None = None,
) -> list[bool]:
    """For each (task id, reflection text, failed answer) row, whether the reflection can tell the
    retry something about its own problem: it is not blank (:func:`reflection_key`), it does not
    restate the failed answer (:func:`resubmits`), its text was written for that one problem
    only (:func:`repeated_reflections`, limit 1), and, where ``problems`` (task id → the
    problem's text) has its problem, it does not only restate the problem
    (:func:`restates_problem`). A blank, a restatement and a phrase written for every failure
    carry nothing; held-out, run 65's trained model left 44 of 69 reflections blank, run 58's
    restated the failed answer in 42 of 59, run 55's wrote one phrase for all 67, run 77's the
    problem's numbers line for 61 of 68."""
    rows = list(rows)
    problems = problems or {}
    repeated = repeated_reflections(((task_id, text) for task_id, text, _ in rows), 1)
    return [
        not hollow(text, failed, repeated, problems.get(task_id)) for task_id, text, failed in rows
    ]


def split_of(task_id: str, holdout_fraction: float) -> str:
    """'heldout' or 'train', stable for a task id across runs and machines."""
    bucket = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if bucket < holdout_fraction else "train"


def _example(traj: Trajectory, prompts: PromptLibrary) -> FailureExample:
    first = traj.attempts[0]
    if traj.reflections:
        reflection_instruction = traj.reflections[0].instruction or ""
    else:  # mined failures have no reflection yet: use the family's prompt
        reflection_instruction = prompts.get("reflection", traj.task.family).text
    if traj.reflections and len(traj.attempts) > 1 and traj.attempts[1].instruction:
        retry_instruction = traj.attempts[1].instruction  # as logged after a reflection
    else:
        retry_instruction = prompts.get("retry", traj.task.family).text
    prompt = reflection_messages(traj.task, [first], [], reflection_instruction)
    group: list[dict[str, Any]] = []
    for g in traj.groups:
        if g.after_attempt != 0:
            continue
        for c in g.candidates:
            if c.status == "completed" and c.reflection is not None and c.reward is not None:
                group.append(
                    {"text": c.reflection.text or "", "reward": c.reward,
                     "logprobs": c.reflection.logprobs,
                     "retry": c.retry.text if c.retry else None,
                     "resubmits": resubmits(c.retry.text if c.retry else None, first.text)}
                )  # fmt: skip
    return FailureExample(
        task_json=traj.task.model_dump_json(),
        prompt=prompt,
        reflection_instruction=reflection_instruction,
        retry_instruction=retry_instruction,
        failed_answer=first.text or json.dumps([c.model_dump() for c in first.tool_calls or []]),
        task_id=traj.task.id,
        trajectory_id=traj.id,
        chat_template_kwargs=dict(traj.task.chat_template_kwargs or {}),
        group=group,
    )


def build_failure_set(
    paths: Iterable[str | Path],
    *,
    holdout_fraction: float = 0.1,
    filt: TrajectoryFilter | None = None,
    max_examples: int | None = None,
    skip_invalid: bool = False,
) -> tuple[list[FailureExample], list[FailureExample], DataReport]:
    """(train, heldout, report) from trajectory logs.

    Torn lines (a writer killed mid-record) are skipped and reported. Any other unreadable line is
    corruption: a :class:`LogFileError` naming file and line, unless ``skip_invalid``, which
    trains on the rest and lists them in the report (the nightly job does, and reports them).
    """
    report = DataReport()
    prompts = PromptLibrary()
    seen: set[tuple[str, str]] = set()
    train: list[FailureExample] = []
    heldout: list[FailureExample] = []
    for path in paths:
        read = ReadReport()
        for traj in read_trajectories(path, filt, on_error="skip", report=read):
            report.trajectories += 1
            if not traj.attempts or not traj.verdicts:
                report.skipped["no attempt recorded"] += 1
                continue
            if traj.verdicts[0].passed:
                report.skipped["first attempt passed"] += 1
                continue
            if traj.task.verifier.type == "human":
                # A person judged it (the chat's "that was wrong"): GRPO cannot ask a person to
                # judge every sampled retry, so online training has no reward for it.
                report.skipped["judged by a person (no automatic reward for retries)"] += 1
                continue
            if traj.verdicts[0].verifier == "tool_execution":
                # The SDK ran the tool and it failed; the logged spec never re-runs tools, so the
                # reward could not tell a better retry from a worse one.
                report.skipped["tool execution failed (the spec does not re-run tools)"] += 1
                continue
            report.failures += 1
            try:
                build_verifier(traj.task.verifier)
            except VerifierSpecError as exc:
                report.skipped[f"verifier cannot be rebuilt: {exc}"[:160]] += 1
                continue
            example = _example(traj, prompts)
            key = (traj.task.content_hash(), example.failed_answer)
            if key in seen:
                report.skipped["duplicate (same task, same failed answer)"] += 1
                continue
            seen.add(key)
            if split_of(traj.task.id, holdout_fraction) == "heldout":
                heldout.append(example)
            else:
                train.append(example)
        if read.invalid and not skip_invalid:
            first = read.invalid[0]
            raise LogFileError(
                f"{first.reason} ({len(read.invalid)} unreadable line(s) in this log; "
                "--skip-invalid trains on the rest)",
                path=first.path, line=first.line,
            )  # fmt: skip
        report.bad_lines += [str(p) for p in read.problems]
    if max_examples is not None and len(train) > max_examples:
        report.skipped["over max_examples"] += len(train) - max_examples
        train = train[:max_examples]
    report.train, report.heldout = len(train), len(heldout)
    report.tasks_train = len({e.task_id for e in train})
    report.tasks_heldout = len({e.task_id for e in heldout})
    return train, heldout, report
