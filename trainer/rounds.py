"""Round-based RRR training, as ART does it: sample → keep the learnable failures → offline GRPO.

One round:

1. **Sample.** The current model (the base model, then the adapter the last round trained) answers
   the training tasks greedily through the one engine. After each failure it writes ``k``
   reflections at ``reflection_temperature``, each followed by a greedy retry
   (``LoopOptions(reflections=k)``). The failed trajectories, each with its k-reflection group and
   the retries' rewards, are appended to the round's log: the same records the runtime writes
   with ``rrr run -k``.
2. **Keep the learnable failures.** A group teaches something only when some of its retries pass
   and some fail. :func:`sample_groups` counts each kind; offline training skips the others.
   With ``beyond_plain``, a failure is kept only when the plain retry (no reflection) fails too:
   a reflection then earns its reward only where saying nothing would not have passed.
3. **Train.** :func:`rrr_trainer.train` in offline mode for a fixed number of steps, starting from
   the previous round's adapter (``init_adapter``): the call the nightly job makes on its
   collected logs.
4. The new adapter samples the next round.

Work is fixed by rounds, tasks, k and steps (never a wall-clock budget), and every sampling call is
seeded, so a rerun on a machine of the same kind does the same work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrr_agent import (
    ConfigError,
    Engine,
    InfrastructureError,
    LoopOptions,
    SamplingParams,
    Settings,
    Task,
    Trajectory,
    TrajectoryStore,
    VerifierError,
)
from rrr_agent.evaluation import first_tries
from rrr_agent.tasksets.countdown2 import checked_reflection

from .config import RRRTrainConfig
from .data import (
    carries_something,
    hollow,
    reflection_key,
    reflection_reward,
    repeated_reflections,
    resubmits,
    scoped_resubmit_reward,
)

__all__ = [
    "PLAIN_BRANCH_FORMS",
    "GroupReport",
    "RoundResult",
    "check_plain_branch",
    "sample_groups",
    "train_rounds",
]

#: How :func:`sample_groups` writes the passing plain retry it gives as a reflection.
PLAIN_BRANCH_FORMS = ("answer", "checked")


def check_plain_branch(
    tasks: Sequence[Task],
    *,
    plain_branch: bool,
    plain_control: bool,
    beyond_plain: bool,
    plain_branch_form: str,
) -> None:
    """Raise :class:`ConfigError` unless ``plain_branch`` with ``form`` can run on ``tasks``
    (see :func:`sample_groups`); the benchmark calls it before loading any model."""
    if plain_branch and (not plain_control or beyond_plain):
        raise ConfigError(
            "sample_groups: plain_branch gives the passing plain retry as a reflection: it "
            "needs plain_control, and beyond_plain drops the failures the plain retry fixes"
        )
    if plain_branch_form not in PLAIN_BRANCH_FORMS:
        raise ConfigError(
            f"sample_groups: plain_branch_form {plain_branch_form!r}: one of "
            f"{', '.join(PLAIN_BRANCH_FORMS)}"
        )
    if plain_branch_form != "answer":
        if not plain_branch:
            raise ConfigError(f"sample_groups: plain_branch_form {plain_branch_form!r} "
                              "writes the given branch: it needs plain_branch")  # fmt: skip
        other = next((t for t in tasks if t.verifier.type != "countdown"), None)
        if other is not None:
            raise ConfigError(
                f"sample_groups: plain_branch_form 'checked' checks a Countdown equation; task "
                f"{other.id!r} is judged by a {other.verifier.type!r} verifier"
            )


@dataclass(slots=True)
class GroupReport:
    """What one sampling pass found."""

    tasks: int = 0
    first_try_passed: int = 0
    failures: int = 0
    #: groups whose rewards differ (some retries passed and some failed, or with
    #: ``resubmit_reward`` some failed retries resubmitted the failed answer and some did not):
    #: the only ones with a gradient
    learnable: int = 0
    all_passed: int = 0
    all_failed: int = 0
    reflections: int = 0
    #: reflections with no text (they earn 0 unless ``reward_blank``)
    blank_reflections: int = 0
    #: reflections written for more than ``max_repeats`` of the sample's problems (they earn 0)
    repeated_reflections: int = 0
    #: failed retries that resubmitted the failed answer (:func:`~rrr_trainer.data.resubmits`)
    resubmitted: int = 0
    #: reflections that carry nothing: blank, or the failed answer restated
    #: (:func:`~rrr_trainer.data.hollow`; they earn ``hollow_reward`` when set, and so do the
    #: ``repeated_reflections``)
    hollow: int = 0
    #: with ``greedy_branch``: the kept failures' greedy reflections (branch 0), and how many of
    #: them carry something by the goal's rule (:func:`~rrr_trainer.data.carries_something`:
    #: not blank, not the failed answer restated, written for that one problem): on the
    #: training problems, what the learning benchmark checks held-out
    greedy_reflections: int = 0
    greedy_carrying: int = 0
    retries_passed: int = 0
    #: failures also asked the plain retry (``plain_control`` or ``beyond_plain``)
    plain_asked: int = 0
    #: failures the plain retry (no reflection) fixed; with ``beyond_plain`` they are not kept
    plain_recovered: int = 0
    #: with ``plain_branch``: the groups given the passing plain retry as one more reflection,
    #: and how many of those given reflections' retries passed. The other counts of reflections
    #: (``reflections``, ``retries_passed``, ``reflected_passes``, ...) are the model's own
    #: only; the group counts (``learnable``, ``all_passed``, ``all_failed``) are as training
    #: sees the groups, the given branch included
    plain_branches: int = 0
    plain_branches_passed: int = 0
    infrastructure_errors: int = 0
    #: summed over the kept failures: the share of its reflections whose retry earned 1
    reflected_passes: float = 0.0
    #: the forgetting guard (``guard``): its tasks answered, and the first tries that passed
    guard_tasks: int = 0
    guard_passed: int = 0
    seconds: float = 0.0

    @property
    def first_try_rate(self) -> float:
        """The sampling model's greedy first try on these tasks."""
        return self.first_try_passed / self.tasks if self.tasks else 0.0

    @property
    def second_try_rate(self) -> float:
        """The sampling model's expected second-try rate on these tasks, reflections paid as
        training pays them: first tries that pass, plus each failure's share of reflections
        whose retry earned 1. The round gate (:func:`train_rounds`) compares models by it."""
        return (self.first_try_passed + self.reflected_passes) / self.tasks if self.tasks else 0.0

    @property
    def plain_second_try_rate(self) -> float | None:
        """The control of :attr:`second_try_rate`: first tries that pass, plus the failures the
        greedy plain retry fixes, as the evaluation's control asks it. None unless every
        failure was asked it (``plain_control``); with ``beyond_plain`` the failures it fixes
        are counted before they are dropped."""
        if not self.tasks or self.plain_asked < self.failures:
            return None
        return (self.first_try_passed + self.plain_recovered) / self.tasks

    @property
    def greedy_carrying_rate(self) -> float | None:
        """The share of the greedy reflections that carry something (None: no greedy branch)."""
        if not self.greedy_reflections:
            return None
        return self.greedy_carrying / self.greedy_reflections

    @property
    def guard_rate(self) -> float | None:
        """The sampling model's greedy first try on the guard tasks (None: no guard)."""
        return self.guard_passed / self.guard_tasks if self.guard_tasks else None

    def to_dict(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["retry_success"] = self.retries_passed / self.reflections if self.reflections else 0.0
        row["first_try_rate"] = self.first_try_rate
        row["second_try_rate"] = self.second_try_rate
        row["plain_second_try_rate"] = self.plain_second_try_rate
        row["guard_rate"] = self.guard_rate
        return row


def sample_groups(
    tasks: Sequence[Task],
    model: str,
    out: str | Path,
    *,
    k: int = 8,
    settings: Settings | None = None,
    max_tokens: int = 32,
    reflection_tokens: int = 32,
    reflection_temperature: float = 1.0,
    greedy_branch: bool = False,
    seed: int | None = 0,
    stop: list[str] | None = None,
    concurrency: int = 16,
    reward_blank: bool = False,
    max_repeats: int = 0,
    beyond_plain: bool = False,
    plain_control: bool = False,
    plain_branch: bool = False,
    plain_branch_form: str = "answer",
    true_claims: bool = False,
    resubmit_reward: float | None = None,
    resubmit_scope: str = "all",
    hollow_reward: float | None = None,
    guard: Sequence[Task] = (),
    guard_concurrency: int | None = None,
    on_result: Callable[[], None] | None = None,
) -> GroupReport:
    """Greedy first attempts; after each failure, ``k`` sampled reflections and their greedy
    retries. Failed trajectories (with their groups) are appended to ``out``. The report counts
    groups as training sees them: a blank reflection's reward is 0 unless ``reward_blank``, and
    so is one written for more than ``max_repeats`` of the sample's problems (0: off), and with
    ``true_claims`` one that states no true equation over the problem's numbers, or a false one;
    with ``resubmit_reward`` one whose retry resubmitted the failed answer earns that, in the
    groups ``resubmit_scope`` names (:func:`~rrr_trainer.data.scoped_resubmit_reward`). Such
    retries are counted either way (:attr:`GroupReport.resubmitted`), and so are reflections
    that carry nothing (:attr:`GroupReport.hollow`), which earn ``hollow_reward`` when set.

    ``greedy_branch``: branch 0 of each group is written greedily, the other k - 1 at
    ``reflection_temperature`` (:attr:`SamplingParams.reflection_greedy_branch`). The
    evaluation reads greedy reflections; with it, each group holds the text the sampling model
    would write there, and the rules above pay it (a phrase the greedy model writes for every
    failure is a text in ``repeated``). :attr:`GroupReport.greedy_carrying` counts how many
    carry something.

    ``beyond_plain``: after each failure, also the greedy plain retry (no reflection, as the
    evaluation's control asks it). A failure it fixes is counted (``plain_recovered``) and not
    kept: on Countdown a phrase that only marks the attempt wrong earns as much as a reflection
    with content wherever a plain retry would pass (run 11), so only the other failures train.

    ``plain_control``: the same plain retry after each failure, counted but not acted on: the
    report's :attr:`~GroupReport.plain_second_try_rate` is then the control of its expected
    second try, on the same first attempts, so each round shows whether the sampling model's
    reflection beats saying nothing.

    ``plain_branch`` (with ``plain_control``): where the plain retry passed, its answer is
    given to the model as one more reflection of the group (branch ``k``,
    :meth:`~rrr_agent.Engine.retry_after`), and the model's retry after it is generated and
    verified as the others are; the given text has no log-probs and is logged with
    ``Reflection.given``. The base model's sampled reflections led to a passing retry 3 % of
    the time in learning run 79's first sample, its plain retry 51 %: the given branch puts
    the model's own better answer in the groups where the reflections found none, so those
    groups become learnable, and training raises the log-probability of writing that answer
    when asked to reflect. The report's reflection counts stay the model's own.
    ``plain_branch_form`` is how that answer is written: ``"answer"``, the plain retry's text
    as it is; ``"checked"`` (Countdown tasks only), the form the ``-demo`` prompts demonstrate,
    the failed equation's value checked against the target and then the passing equation
    (:func:`rrr_agent.tasksets.countdown2.checked_reflection`: "14 * 9 = 126, not 23.
    14 + 9 = 23."), a text the program writes from the verifier's arithmetic and the model's
    own answer.

    ``guard``: tasks of another skill that the model only answers (greedy first tries, no
    retry, never logged): :attr:`~GroupReport.guard_rate` shows what training costs elsewhere,
    and the round gate of :func:`train_rounds` can reject a model that forgets. They are sent
    ``guard_concurrency`` at a time (None: ``concurrency``): batched bf16 serving on a CPU
    changes near-tie answers from one batch to another, so the same model measured twice at 16
    differed on 7-12 answers of 200; one at a time it measured the same twice."""

    check_plain_branch(tasks, plain_branch=plain_branch, plain_control=plain_control,
                       beyond_plain=beyond_plain, plain_branch_form=plain_branch_form)  # fmt: skip

    def engine(options: LoopOptions, **sampling: Any) -> Engine:
        return Engine.from_settings(
            settings, model=model, options=options, log=False,
            sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed, stop=stop,
                                    **sampling),
        )  # fmt: skip

    reflecting = engine(
        LoopOptions(max_retries=1, reflections=k),
        reflection_max_tokens=reflection_tokens,
        reflection_temperature=reflection_temperature,
        reflection_greedy_branch=greedy_branch,
    )
    asking = beyond_plain or plain_control
    plain = engine(LoopOptions(max_retries=1, reflect=False)) if asking else None
    store = TrajectoryStore(out)
    report = GroupReport(tasks=len(tasks))
    started = time.perf_counter()
    #: per kept failure: its task, its failed answer and its completed (reflection, retry
    #: reward, the retry resubmitted the failed answer, the reflection was given) tuples
    failed: list[tuple[Task, str | None, list[tuple[str, float, bool, bool]]]] = []
    #: with ``greedy_branch``: (task id, greedy reflection, failed answer) per kept failure
    greedy: list[tuple[str, str | None, str | None]] = []
    gate = asyncio.Semaphore(concurrency)  # plain retries in flight

    async def keep(traj: Trajectory) -> None:
        if plain is not None:
            async with gate:
                try:
                    control = await plain.run(traj.task, first_attempt=traj.attempts[0])
                except (InfrastructureError, VerifierError):
                    report.infrastructure_errors += 1  # in the error log; never training data
                    return
            report.plain_asked += 1
            if control.passed_within(2):
                report.plain_recovered += 1
                if beyond_plain:
                    return
                answer = (control.attempts[1].text or "").strip()
                if plain_branch and answer and traj.groups:
                    if plain_branch_form == "checked":
                        answer = checked_reflection(
                            traj.attempts[0].text, answer, traj.task.verifier.params()["target"]
                        )
                    async with gate:
                        try:
                            given = await reflecting.retry_after(traj, answer, branch=k)
                        except (InfrastructureError, VerifierError):
                            report.infrastructure_errors += 1
                            return
                    report.plain_branches += 1
                    report.plain_branches_passed += given.reward == 1.0
                    first, *rest = traj.groups
                    first = first.model_copy(update={"candidates": [*first.candidates, given]})
                    traj = traj.model_copy(update={"groups": [first, *rest]})
        store.append(traj)
        failed_answer = traj.attempts[0].text
        done = [
            (
                c.reflection.text or "",
                float(c.reward),
                resubmits(c.retry.text if c.retry else None, failed_answer),
                c.reflection.given,
            )
            for g in traj.groups
            if g.after_attempt == 0
            for c in g.candidates
            if c.status == "completed" and c.reward is not None and c.reflection is not None
        ]
        failed.append((traj.task, failed_answer, done))
        if greedy_branch:
            texts = [
                c.reflection.text for g in traj.groups if g.after_attempt == 0
                for c in g.candidates
                if c.branch == 0 and c.status == "completed" and c.reflection is not None
            ]  # fmt: skip
            if texts:
                greedy.append((traj.task.id, texts[0], failed_answer))

    async def guarded() -> None:
        first_only = engine(LoopOptions(max_retries=0))
        at_once = guard_concurrency if guard_concurrency is not None else concurrency
        outcomes = await first_tries(first_only, guard, concurrency=at_once)
        report.infrastructure_errors += outcomes.count(None)  # never a wrong answer
        report.guard_tasks += len(outcomes) - outcomes.count(None)
        report.guard_passed += outcomes.count(True)

    async def go() -> None:
        checks: list[asyncio.Task[None]] = []
        async for result in reflecting.run_many(list(tasks), concurrency=concurrency):
            if on_result is not None:
                on_result()
            traj = result.trajectory
            if traj is None:  # an infrastructure failure is never training data
                report.infrastructure_errors += 1
                continue
            if traj.first_try_passed:
                report.first_try_passed += 1
                continue
            report.failures += 1
            checks.append(asyncio.create_task(keep(traj)))
        await asyncio.gather(*checks)
        if guard:
            await guarded()

    asyncio.run(go())
    # Counted once the sample is complete: whether a text repeats depends on all of it.
    # Training counts repeats over every logged text, the given ones included (offline.py).
    repeated = repeated_reflections(
        ((task.id, text) for task, _, done in failed for text, *_ in done), max_repeats
    )
    for task, failed_answer, done in failed:
        task_text = task.user_text()
        paid = scoped_resubmit_reward(resubmit_reward, resubmit_scope, [r for _, r, *_ in done])
        rewards = [
            reflection_reward(t, r, reward_blank, repeated, task_text, again, paid,
                              failed_answer=failed_answer, hollow_reward=hollow_reward,
                              true_claims=true_claims)
            for t, r, again, _ in done
        ]  # fmt: skip
        own = [(t, again, reward)
               for (t, _, again, given), reward in zip(done, rewards, strict=True)
               if not given]  # fmt: skip
        report.reflections += len(own)
        report.blank_reflections += sum(1 for t, _, _ in own if not t.strip())
        report.repeated_reflections += sum(1 for t, _, _ in own if reflection_key(t) in repeated)
        report.resubmitted += sum(1 for _, again, _ in own if again)
        report.hollow += sum(1 for t, _, _ in own if hollow(t, failed_answer, (), task_text))
        report.retries_passed += sum(1 for _, _, r in own if r == 1.0)
        if own:
            report.reflected_passes += sum(1 for _, _, r in own if r == 1.0) / len(own)
        if rewards and all(r == 1.0 for r in rewards):
            report.all_passed += 1
        elif len(set(rewards)) > 1:  # a gradient: with resubmit_reward also among failures
            report.learnable += 1
        else:
            report.all_failed += 1
    report.greedy_reflections = len(greedy)
    report.greedy_carrying = sum(carries_something(greedy, {t.id: t.user_text() for t in tasks}))
    report.seconds = time.perf_counter() - started
    return report


@dataclass(slots=True)
class RoundResult:
    round: int
    #: the model after this round (None: still the base model)
    adapter: Path | None
    sampled: GroupReport
    steps: int
    train_seconds: float
    metrics_path: Path | None
    training: dict[str, Any] = field(default_factory=dict)
    #: the adapter merged into full weights (``config.merge``), what a server loads directly
    merged: Path | None = None
    #: with the round gate: "kept" (trained on, or nothing learnable), "rejected" (the sampling
    #: model scored below the best one by more than the gate: not trained on; the next round
    #: samples the best model) or "scored" (the sample after the last round, which only scores
    #: the last model; this result names the best model, what the run hands on)
    gate: str | None = None
    #: with the round gate: the score it gave the model that drew this round's sample
    #: (``second_try_rate``, or blended with ``first_try_rate`` by ``gate_first_try``)
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "adapter": str(self.adapter) if self.adapter else None,
            "sampled": self.sampled.to_dict(),
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 1),
            "training": self.training,
            "gate": self.gate,
            "score": self.score,
        }


def train_rounds(
    tasks: Sequence[Task],
    config: RRRTrainConfig,
    workdir: str | Path,
    *,
    rounds: int,
    sampler: Callable[[int, RoundResult | None], str] | None = None,
    settings: Settings | None = None,
    max_tokens: int = 32,
    reflection_temperature: float = 1.0,
    greedy_branch: bool = False,
    seeded: bool = True,
    stop: list[str] | None = None,
    concurrency: int = 16,
    beyond_plain: bool = False,
    plain_control: bool = False,
    plain_branch: bool = False,
    plain_branch_form: str = "answer",
    gate: float | None = None,
    gate_first_try: float = 0.0,
    guard: Sequence[Task] = (),
    guard_margin: float = 0.01,
    guard_concurrency: int | None = None,
    min_carrying: float | None = None,
    say: Callable[[str], None] = print,
) -> list[RoundResult]:
    """``rounds`` rounds of sample → train (offline mode, ``config.max_steps`` steps each, groups of
    ``config.num_generations`` reflections sampled at ``reflection_temperature``; with
    ``greedy_branch`` the first of them greedy, see :func:`sample_groups`).

    ``config.init_adapter`` (optional) is where round 1 starts. ``sampler(round, previous)`` makes
    the previous round's model (None: the starting model) answer and returns the model string
    that samples the round: e.g. a vLLM server restarted on the merged weights
    (``config.merge``) or given the adapter at run time (:func:`rrr_agent.serving.load_adapter`,
    as the nightly job reloads its server). Default: the embedded model in this process.

    ``seeded``: send per-request seeds (round r: ``config.seed + 1000 r``, mixed with each
    task's id and branch by :func:`rrr_agent._types.request_seed`). False leaves sampling to
    the server's own random state, for a server that cannot take seeds: vLLM's CPU backend
    (0.32) crashes on a seeded request whose prefill is chunked, so a CPU server started
    outside rrr needs ``--no-enable-chunked-prefill`` (:class:`VLLMServer` passes it).

    ``beyond_plain``: keep only failures the plain retry does not fix (see :func:`sample_groups`).
    ``plain_control``: also ask each failure the plain retry, to report the control of each
    round's expected second try (:attr:`GroupReport.plain_second_try_rate`); training is as
    without it. ``plain_branch`` (with ``plain_control``): where the plain retry passed, its
    answer joins the group as a reflection given to the model, written as
    ``plain_branch_form`` says (see :func:`sample_groups`).

    ``gate`` (a margin, e.g. 0.03; None: off): each round's sample scores the model that drew
    it by its expected second-try rate (:attr:`GroupReport.second_try_rate`, on the same
    tasks every round). A round whose model scores more than ``gate`` below the best model so
    far is not trained on (``"rejected"``): the next round samples the best model again, with
    that round's seeds, and trains from it. The best model is never rejected: each sample it
    draws adds to its scores, and it is judged by their mean (a score is itself a sample: run
    21 found one model's three samples 0.520, 0.484 and 0.499). One more sample after the last
    round scores the last model, and the last result (``"scored"``) names the best-scoring
    model: what the run hands on. Work stays fixed: a rejected round costs its sample and no
    training. Not with ``beyond_plain``, whose samples leave out the failures a plain retry
    fixes.

    ``gate_first_try`` (0 to 1; with the gate): the share of the score that is the sampling
    model's first try (:attr:`GroupReport.first_try_rate`): the score is
    ``(1 - w) * second_try_rate + w * first_try_rate``, and ``gate`` is a margin on it. 0 (the
    default) scores the expected second try alone. Run 62's gate kept a model 0.2 points
    above the next one on the expected second try whose first try was 10.5 points lower.

    ``guard`` (tasks of another skill; with the gate): each sample also measures the sampling
    model's first try on them (:attr:`GroupReport.guard_rate`). A model whose rate falls more
    than ``guard_margin`` below the starting model's (round 1's sample) forgets: it is
    rejected, and never becomes the best, whatever it scores. Runs 22 and 23 ended on models
    that lost 2.5 and 3.5 points on the untouched probe; the guard holds a disjoint sample of
    the same skill (the probe itself is never used to choose). ``guard_concurrency``: the
    guard's requests in flight (None: ``concurrency``; see :func:`sample_groups`).

    ``min_carrying`` (a share, 0 to 1; with the gate and ``greedy_branch``; None: off): a model
    whose greedy reflections on its sample carry something (:attr:`GroupReport.greedy_carrying`,
    the goal's rule on the training problems) less often than this is rejected, as a model that
    forgets is, and never becomes the best, whatever it scores (the starting model, what the run
    falls back to, is judged by the goal itself). The gate's score counts only
    what the retries do: learning run 75's round-5 sample showed the model that drew it write
    one phrase after every failure, and it was kept.

    A round whose sampling met an infrastructure error raises :class:`InfrastructureError`:
    its sample would not be the model's, and an error is never a task failure.
    """
    from .run import train

    if gate is not None and beyond_plain:
        raise ConfigError(
            "train_rounds: the round gate scores a model on all its failures; with "
            "beyond_plain the sample leaves out those a plain retry fixes: use one of them"
        )
    if not 0.0 <= gate_first_try <= 1.0:
        raise ConfigError(
            f"train_rounds: gate_first_try={gate_first_try}: a share of the score, 0 to 1"
        )
    if gate_first_try and gate is None:
        raise ConfigError("train_rounds: gate_first_try weighs the round gate's score: set gate")
    if guard and gate is None:
        raise ConfigError(
            "train_rounds: the forgetting guard acts through the round gate: set gate"
        )
    if min_carrying is not None and not (gate is not None and greedy_branch):
        raise ConfigError(
            "train_rounds: min_carrying judges the greedy reflections through the round gate: "
            "set gate and greedy_branch"
        )
    if min_carrying is not None and not 0.0 <= min_carrying <= 1.0:
        raise ConfigError(f"train_rounds: min_carrying={min_carrying}: a share, 0 to 1")
    if guard_concurrency is not None and guard_concurrency < 1:
        raise ConfigError(
            f"train_rounds: guard_concurrency={guard_concurrency}: at least one request at a time"
        )
    workdir = Path(workdir)
    start = config.init_adapter
    name = sampler or (lambda _r, prev: _embedded_with(prev.adapter if prev else start))
    adapter: str | None = start
    previous: RoundResult | None = None
    #: the best-scoring model so far and its scores, one per sample it drew (None inside: the
    #: starting model)
    best: tuple[list[float], RoundResult | None] | None = None
    #: the starting model's first try on the guard tasks (round 1's sample)
    guard_base: float | None = None
    results: list[RoundResult] = []

    def unchanged(
        r: int, sampled: GroupReport, verdict: str | None, score: float | None
    ) -> RoundResult:
        return RoundResult(
            round=r, adapter=Path(adapter) if adapter else None, sampled=sampled, steps=0,
            train_seconds=0.0, metrics_path=None, merged=previous.merged if previous else None,
            gate=verdict, score=score,
        )  # fmt: skip

    for r in range(1, rounds + 1 + (gate is not None)):
        folder = workdir / f"round-{r:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "groups.jsonl"
        log.unlink(missing_ok=True)  # a round restarted from scratch samples afresh
        sampled = sample_groups(
            tasks, name(r, previous), log, k=config.num_generations, settings=settings,
            max_tokens=max_tokens, reflection_tokens=config.max_reflection_tokens,
            reflection_temperature=reflection_temperature, greedy_branch=greedy_branch,
            seed=config.seed + 1000 * r if seeded else None,
            reward_blank=config.reward_blank_reflections,
            max_repeats=config.max_reflection_repeats,
            stop=stop, concurrency=concurrency, beyond_plain=beyond_plain,
            plain_control=plain_control, plain_branch=plain_branch,
            plain_branch_form=plain_branch_form, true_claims=config.reward_true_claims,
            resubmit_reward=config.resubmit_reward, resubmit_scope=config.resubmit_scope,
            hollow_reward=config.hollow_reward, guard=guard, guard_concurrency=guard_concurrency,
        )  # fmt: skip
        say(f"round {r}: sampled {json.dumps(sampled.to_dict())}")
        if sampled.infrastructure_errors:
            raise InfrastructureError(
                f"round {r}: {sampled.infrastructure_errors} of {len(tasks)} runs failed on "
                f"infrastructure (see the error log next to the settings' trajectory log)"
            )
        score: float | None = None
        if gate is not None:
            score = (
                1.0 - gate_first_try
            ) * sampled.second_try_rate + gate_first_try * sampled.first_try_rate
            guard_rate = sampled.guard_rate
            if guard_base is None:
                guard_base = guard_rate
            forgets = (
                guard_rate is not None
                and guard_base is not None
                and guard_rate < guard_base - guard_margin
            )
            carrying = sampled.greedy_carrying_rate
            hollow_model = min_carrying is not None and (carrying or 0.0) < min_carrying
            unfit = forgets or hollow_model
            if best is not None and best[1] is previous:  # the best model again: pool its scores
                best[0].append(score)
            elif best is None or (score > statistics.fmean(best[0]) and not unfit):
                best = ([score], previous)
            best_score = statistics.fmean(best[0])
            last = r > rounds
            rejected = best[1] is not previous and (score < best_score - gate or unfit)
            if rejected or (last and best[1] is not previous):
                previous = best[1]  # back to the best model: the next round samples it
                adapter = str(previous.adapter) if previous and previous.adapter else start
            if last or rejected:
                results.append(unchanged(r, sampled, "scored" if last else "rejected", score))
                say(
                    f"round {r}: the model scores {score:.3f}, the best {best_score:.3f}"
                    + (f", guard {guard_rate:.3f} (start {guard_base:.3f})" if forgets else "")
                    + (
                        f", greedy reflections carrying {carrying or 0.0:.3f}"
                        if hollow_model
                        else ""
                    )
                    + (": the run ends on the best" if last else ": rejected; back to the best")
                )
                continue
        if sampled.learnable == 0:  # no group with differing rewards: nothing to learn from
            results.append(unchanged(r, sampled, None if gate is None else "kept", score))
            say(f"round {r}: no learnable failure; the model is unchanged")
            continue
        round_config = dataclasses.replace(
            config, mode="offline", init_adapter=adapter, output_dir=str(folder / "train"),
            seed=config.seed + r, holdout_fraction=0.0,
        )  # fmt: skip
        result = train(round_config, [log], resume=False)
        assert result.adapter_dir is not None
        adapter = str(result.adapter_dir)
        groups_file = Path(round_config.output_dir) / "offline_groups.json"
        training = json.loads(groups_file.read_text()) if groups_file.is_file() else {}
        results.append(
            RoundResult(
                round=r, adapter=result.adapter_dir, sampled=sampled, steps=result.steps,
                train_seconds=result.seconds, metrics_path=result.metrics_path,
                training=training, merged=result.merged_dir,
                gate=None if gate is None else "kept", score=score,
            )
        )  # fmt: skip
        previous = results[-1]
        say(f"round {r}: trained {result.steps} steps in {result.seconds:.0f}s → {adapter}")
    return results


def _embedded_with(adapter: str | Path | None) -> str:
    from rrr_agent import embedded

    return f"local/{adapter}" if adapter else embedded.EMBEDDED_MODEL_STRING
