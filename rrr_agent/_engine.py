"""The one loop engine: attempt → verify → (reflect → retry → verify)*, async, emitting events.

The SDK, the proxy, the TUI and evaluation all run tasks through :class:`Engine`; none has a loop of
its own. What the engine guarantees:

* the conversation continues in place after a failure (see :mod:`rrr_agent._conversation`), with
  the task family's reflection prompt verbatim (plus the verifier's feedback only when
  ``show_feedback`` is on);
* an infrastructure error (timeout, 429, 5xx, refused connection, malformed reply) is retried with
  backoff and, if it persists, raised: it is never recorded as a failed attempt, so it never
  becomes training data (it goes to the separate error log instead);
* with k > 1 reflections per failure, all k branches are logged as a group with their rewards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._conversation import plain_retry_messages, reflection_messages, retry_messages
from ._errors import (
    InfrastructureError,
    RRRError,
    VerificationFailed,
    VerifierError,
    VerifierSpecError,
)
from ._events import (
    AttemptFinished,
    AttemptStarted,
    Event,
    GroupFinished,
    Hooks,
    ReflectionFinished,
    ReflectionStarted,
    RetryStarted,
    RunFailed,
    RunFinished,
    RunStarted,
    TokenDelta,
    TransportRetry,
    Verified,
)
from ._models import ModelClient, RetryPolicy, call_with_retries, resolve_client
from ._prompts import PromptLibrary
from ._settings import Settings, load_settings
from ._store import ErrorLog, TrajectoryStore
from ._types import (
    Attempt,
    Candidate,
    LoopOptions,
    ModelOutput,
    Outcome,
    Reflection,
    ReflectionGroup,
    SamplingParams,
    Task,
    Trajectory,
    Verdict,
    utcnow,
)
from .verifiers import Verifier, build_verifier

__all__ = ["Engine", "RunResult", "ToolExecutor", "ToolOutcome"]


@lru_cache(maxsize=1)
def rrr_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rrr-agent")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(slots=True)
class RunResult:
    """Outcome of one task in a batch: a trajectory, or the error that stopped it."""

    task: Task
    trajectory: Trajectory | None = None
    error: RRRError | None = None

    @property
    def ok(self) -> bool:
        return self.trajectory is not None


EventCallback = Callable[[Event], Awaitable[None] | None]


@dataclass(slots=True)
class ToolOutcome:
    """What running one attempt's tool calls gave: one result text per call, in order, and the
    first failure (its message and the tool's name), if any."""

    results: list[str]
    error: str | None = None
    tool: str | None = None


#: Runs an attempt's tool calls: ``await execute(output, task)``.
ToolExecutor = Callable[[ModelOutput, Task], Awaitable[ToolOutcome]]


class Engine:
    """Runs tasks through the reflect-retry loop with one model.

    ``model`` is a litellm model string (``hosted_vllm/name``, ``openai/gpt-4o-mini``,
    ``scripted/x``...) or any :class:`ModelClient`. ``store`` receives every finished trajectory;
    ``error_log`` every run stopped by an error (never the trajectory store).
    """

    def __init__(
        self,
        model: str | ModelClient,
        *,
        options: LoopOptions | None = None,
        sampling: SamplingParams | None = None,
        store: TrajectoryStore | None = None,
        error_log: ErrorLog | None = None,
        hooks: Hooks | None = None,
        prompts: PromptLibrary | None = None,
        timeout_s: float | None = 120.0,
        retry_policy: RetryPolicy | None = None,
        model_revision: str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        stream: bool = False,
    ):
        self.client = resolve_client(model, api_base=api_base, api_key=api_key)
        #: Stream tokens: emit ``TokenDelta`` events while attempts and reflections are written
        #: (for clients with a ``stream`` method; others deliver each call's text at once).
        self.stream_tokens = stream
        self.options = options or LoopOptions()
        self.sampling = sampling or SamplingParams()
        self.store = store
        self.error_log = error_log
        self.hooks = hooks or Hooks()
        self.prompts = prompts or PromptLibrary()
        self.timeout_s = timeout_s
        self.retry_policy = retry_policy or RetryPolicy()
        self.model_revision = model_revision

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        model: str | ModelClient | None = None,
        options: LoopOptions | None = None,
        sampling: SamplingParams | None = None,
        log: bool | None = None,
        hooks: Hooks | None = None,
        on_prepare: Callable[[str], None] | None = None,
        stream: bool = False,
    ) -> Engine:
        """The one way to build an engine from the settings object; every caller uses it (CLI,
        evaluation, mining, SDK, proxy, chat, nightly job).

        The model is ``model``, else ``settings.model``, else the embedded model, which is
        prepared first when it is the one chosen (``on_prepare`` receives progress lines). API key,
        API base, timeout, transport retries, prompts folder and model revision always come from
        ``settings``; ``options`` and ``sampling`` default to the settings' own. Trajectories go to
        ``settings.trajectory_log`` (and failed runs to its error log) when ``log`` (default:
        ``settings.log``) is on.
        """
        settings = settings if settings is not None else load_settings()
        from .embedded import model_or_embedded, prepare_for

        chosen = model if model is not None else model_or_embedded(settings.model)
        if isinstance(chosen, str):
            prepare_for(chosen, on_prepare)
        logging = settings.log if log is None else log
        return cls(
            chosen,
            options=options or settings.loop_options(),
            sampling=sampling or settings.sampling(),
            store=TrajectoryStore(settings.trajectory_log, fsync=settings.fsync)
            if logging
            else None,
            error_log=ErrorLog(settings.error_log) if logging else None,
            hooks=hooks,
            prompts=PromptLibrary(settings.prompts_dir),
            timeout_s=settings.timeout_s,
            retry_policy=RetryPolicy(tries=settings.transport_tries),
            model_revision=settings.model_revision,
            api_base=settings.api_base,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            stream=stream,
        )

    @property
    def model(self) -> str:
        return self.client.model

    # ------------------------------------------------------------------ single task

    async def run(
        self,
        task: Task | dict[str, Any],
        *,
        on_event: EventCallback | None = None,
        raise_on_failure: bool = False,
        first_attempt: Attempt | None = None,
        execute: ToolExecutor | None = None,
        sampling: SamplingParams | None = None,
    ) -> Trajectory:
        """Solve one task; returns its trajectory (also appended to the store).

        Raises :class:`InfrastructureError` when the model could not be reached after transport
        retries, :class:`VerifierError` when the verifier crashed, :class:`VerifierSpecError` for a
        bad spec (before any model call), and :class:`VerificationFailed` when every attempt failed
        and ``raise_on_failure`` is set.

        ``first_attempt`` continues from an answer given earlier (re-verified, not regenerated):
        evaluation uses it so a control condition retries exactly the same failure.

        ``execute`` runs an attempt's tool calls once the verifier has passed it (the SDK's
        :class:`~rrr_agent.ToolRunner`). A call that fails fails the attempt: its error is the
        verdict's feedback (verifier ``"tool_execution"``) and the reflection and retry follow.
        The results are kept in ``Attempt.tool_results``.

        ``sampling`` replaces the engine's sampling for this run (the proxy passes each request's).
        """
        task = task if isinstance(task, Task) else Task.model_validate(task)
        verifier = build_verifier(task.verifier)
        state = _Run(self, task, verifier, on_event, first_attempt, execute, sampling)
        try:
            trajectory = await state.execute()
        except (InfrastructureError, VerifierError) as exc:
            await state.emit(
                RunFailed(
                    trajectory_id=state.id,
                    task_id=task.id,
                    error=str(exc),
                    error_type=type(exc).__name__,
                    stage=state.stage,
                )
            )
            if self.error_log is not None:
                self.error_log.append_error(
                    task=task, model=self.model, error=exc, stage=state.stage, run_id=state.id
                )
            raise
        if self.store is not None:
            if self.store.fsync:
                await asyncio.to_thread(self.store.append, trajectory)
            else:
                self.store.append(trajectory)
        await state.emit(
            RunFinished(trajectory_id=state.id, task_id=task.id, trajectory=trajectory)
        )
        if raise_on_failure and not trajectory.passed:
            raise VerificationFailed(trajectory)
        return trajectory

    async def retry_after(
        self, trajectory: Trajectory, reflection: str, *, branch: int
    ) -> Candidate:
        """The retry the model writes after ``reflection``, a text given to it in place of its own
        reflection on ``trajectory``'s failed first attempt: the conversation is the one the
        trajectory's reflections were written in (the same reflection and retry prompts), the
        retry is generated and verified as any retry is, and the candidate is returned as branch
        ``branch`` (``Reflection.given`` set; it is not added to the trajectory or the store).
        Learning rounds give the model's own passing plain retry this way
        (:func:`rrr_trainer.rounds.sample_groups`, ``plain_branch``). Raises
        :class:`InfrastructureError` or :class:`VerifierError` as :meth:`run` does, and
        :class:`ValueError` for a trajectory whose first try passed."""
        if not trajectory.verdicts or trajectory.verdicts[0].passed:
            raise ValueError("retry_after: the trajectory's first attempt did not fail")
        task = trajectory.task
        state = _Run(self, task, build_verifier(task.verifier), None)
        instruction = state._reflection_instruction(trajectory.verdicts[0])
        prompt = reflection_messages(task, trajectory.attempts[:1], [], instruction)
        return await state._branch(prompt, instruction, 0, branch=branch, given=reflection)

    def run_sync(self, task: Task | dict[str, Any], **kwargs: Any) -> Trajectory:
        """Blocking form of :meth:`run` (not callable from inside a running event loop)."""
        _no_running_loop("run_sync", "await engine.run(task)")
        return asyncio.run(self.run(task, **kwargs))

    async def stream(self, task: Task | dict[str, Any]) -> AsyncIterator[Event]:
        """Yield one run's events as they happen; re-raise the run's error at the end."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        runner = asyncio.create_task(self.run(task, on_event=queue.put_nowait))
        runner.add_done_callback(lambda _t: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            await runner
        finally:
            if not runner.done():
                runner.cancel()

    # ------------------------------------------------------------------ batches

    async def run_many(
        self,
        tasks: Iterable[Task],
        *,
        concurrency: int = 8,
        on_event: EventCallback | None = None,
    ) -> AsyncIterator[RunResult]:
        """Run tasks with at most ``concurrency`` in flight; yield results as they finish.

        Per-task errors (infrastructure, verifier, bad spec) come back as ``RunResult.error`` and do
        not stop the batch. Anything else is a bug and is raised.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        source = iter(tasks)
        results: asyncio.Queue[RunResult | BaseException | None] = asyncio.Queue()

        async def worker() -> None:
            try:
                for task in source:
                    try:
                        traj = await self.run(task, on_event=on_event)
                        results.put_nowait(RunResult(task=task, trajectory=traj))
                    except (InfrastructureError, VerifierError, VerifierSpecError) as exc:
                        results.put_nowait(RunResult(task=task, error=exc))
            except Exception as exc:
                results.put_nowait(exc)
            finally:
                results.put_nowait(None)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        running = len(workers)
        try:
            while running:
                item = await results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for w in workers:
                if not w.done():
                    w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def run_many_sync(self, tasks: Iterable[Task], *, concurrency: int = 8) -> list[RunResult]:
        _no_running_loop("run_many_sync", "async for r in engine.run_many(tasks)")

        async def collect() -> list[RunResult]:
            return [r async for r in self.run_many(tasks, concurrency=concurrency)]

        return asyncio.run(collect())


def _no_running_loop(name: str, alternative: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name}() cannot run inside an event loop; use `{alternative}` instead")


class _Run:
    """State of one task's run. Not shared between tasks."""

    def __init__(
        self,
        engine: Engine,
        task: Task,
        verifier: Verifier,
        on_event: EventCallback | None,
        first_attempt: Attempt | None = None,
        execute: ToolExecutor | None = None,
        sampling: SamplingParams | None = None,
    ):
        self.first_attempt = first_attempt
        self.execute_tools = execute
        self.sampling = sampling or engine.sampling
        self.engine = engine
        self.task = task
        self.verifier = verifier
        self.on_event = on_event
        self.id = _new_id()
        self.stage = "attempt"
        self.prompt_versions: dict[str, str] = {}
        self.response_model: str | None = None

    async def emit(self, event: Event) -> None:
        if self.engine.hooks:
            await self.engine.hooks.emit(event)
        if self.on_event is not None:
            result = self.on_event(event)
            if asyncio.iscoroutine(result):
                await result

    async def execute(self) -> Trajectory:
        engine, task, options = self.engine, self.task, self.engine.options
        started = utcnow()
        await self.emit(RunStarted(trajectory_id=self.id, task_id=task.id, model=engine.model))
        await self.emit(AttemptStarted(trajectory_id=self.id, task_id=task.id, index=0))
        if self.first_attempt is not None:
            first = self.first_attempt.model_copy(update={"index": 0, "branch": 0})
            await self.emit(AttemptFinished(trajectory_id=self.id, task_id=task.id, attempt=first))
        else:
            first = await self._generate_attempt(
                task.openai_messages(), index=0, branch=0, instr=None
            )
        first, verdict = await self._verify(first)
        attempts: list[Attempt] = [first]
        verdicts: list[Verdict] = [verdict]
        reflections: list[Reflection] = []
        groups: list[ReflectionGroup] = []

        while not verdicts[-1].passed and len(attempts) <= options.max_retries:
            failed_index = len(attempts) - 1
            if not options.reflect:
                attempt, verdict = await self._verify(
                    await self._plain_retry(attempts, verdicts[-1])
                )
                attempts.append(attempt)
                verdicts.append(verdict)
                continue
            instruction = self._reflection_instruction(verdicts[-1])
            prompt = reflection_messages(task, attempts, reflections, instruction)
            if options.reflections == 1:
                chosen = await self._branch(prompt, instruction, failed_index, branch=0)
            else:
                group = await self._group(prompt, instruction, failed_index)
                groups.append(group)
                await self.emit(GroupFinished(trajectory_id=self.id, task_id=task.id, group=group))
                chosen = group.candidates[group.chosen]
            assert chosen.reflection and chosen.retry and chosen.verdict
            reflections.append(chosen.reflection)
            attempts.append(chosen.retry)
            verdicts.append(chosen.verdict)

        if verdicts[0].passed:
            outcome = Outcome.PASSED_FIRST_TRY
        elif verdicts[-1].passed:
            outcome = Outcome.PASSED_AFTER_RETRY
        else:
            outcome = Outcome.FAILED
        return Trajectory(
            id=self.id,
            task=task,
            model=engine.model,
            model_revision=engine.model_revision,
            response_model=self.response_model,
            sampling=self.sampling,
            options=options,
            prompt_versions=self.prompt_versions,
            attempts=attempts,
            verdicts=verdicts,
            reflections=reflections,
            groups=groups,
            outcome=outcome,
            started_at=started,
            finished_at=utcnow(),
            rrr_version=rrr_version(),
        )

    def _reflection_instruction(self, verdict: Verdict) -> str:
        prompts = self.engine.prompts
        reflection = prompts.get("reflection", self.task.family)
        self.prompt_versions[reflection.name] = reflection.version
        if not (self.engine.options.show_feedback and verdict.feedback):
            return reflection.text
        feedback = prompts.get("feedback", self.task.family)
        self.prompt_versions[feedback.name] = feedback.version
        return feedback.render(feedback=verdict.feedback) + "\n\n" + reflection.text

    async def _plain_retry(self, attempts: list[Attempt], verdict: Verdict) -> Attempt:
        prompts = self.engine.prompts
        plain = prompts.get("plain_retry", self.task.family)
        self.prompt_versions[plain.name] = plain.version
        instruction = plain.text
        if self.engine.options.show_feedback and verdict.feedback:
            feedback = prompts.get("feedback", self.task.family)
            self.prompt_versions[feedback.name] = feedback.version
            instruction = feedback.render(feedback=verdict.feedback) + "\n\n" + plain.text
        index = len(attempts)
        await self.emit(
            RetryStarted(trajectory_id=self.id, task_id=self.task.id, index=index, branch=0)
        )
        messages = plain_retry_messages(self.task, attempts, instruction)
        return await self._generate_attempt(messages, index=index, branch=0, instr=instruction)

    def _retry_instruction(self) -> str:
        retry = self.engine.prompts.get("retry", self.task.family)
        self.prompt_versions[retry.name] = retry.version
        return retry.text

    async def _call(
        self, messages: list[dict[str, Any]], *, stage: str, index: int, branch: int
    ) -> ModelOutput:
        engine = self.engine
        self.stage = stage
        reflection = stage == "reflection"
        tools = self.task.tools
        # A reflection is prose: keep the tools visible (the conversation mentions them) but
        # forbid calling one.
        tool_choice = "none" if reflection and tools else None
        # Seeded per task and branch: k branches, or many tasks, with one seed would draw one
        # random stream on a server that seeds each request (vLLM).
        params = self.sampling.request_params(
            reflection=reflection, task_id=self.task.id, branch=branch
        )
        if reflection:
            params.pop("response_format", None)  # a reflection is prose, never the JSON answer
        if self.task.chat_template_kwargs:
            params["chat_template_kwargs"] = dict(self.task.chat_template_kwargs)

        streaming = getattr(engine.client, "stream", None) if engine.stream_tokens else None

        async def delta(text: str) -> None:
            await self.emit(
                TokenDelta(
                    trajectory_id=self.id,
                    task_id=self.task.id,
                    stage=stage,
                    index=index,
                    branch=branch,
                    text=text,
                )
            )

        async def once() -> ModelOutput:
            if streaming is not None:
                out: ModelOutput = await streaming(
                    messages,
                    params=params,
                    on_delta=delta,
                    tools=tools,
                    tool_choice=tool_choice,
                    timeout=engine.timeout_s,
                )
                return out
            return await engine.client.complete(
                messages,
                params=params,
                tools=tools,
                tool_choice=tool_choice,
                timeout=engine.timeout_s,
            )

        async def on_retry(try_number: int, exc: InfrastructureError, delay: float) -> None:
            await self.emit(
                TransportRetry(
                    trajectory_id=self.id,
                    task_id=self.task.id,
                    stage=stage,
                    error=str(exc),
                    error_type=type(exc).__name__,
                    try_number=try_number,
                    delay_s=delay,
                )
            )

        output = await call_with_retries(once, engine.retry_policy, on_retry)
        if self.response_model is None:
            self.response_model = output.response_model
        return output

    async def _generate_attempt(
        self, messages: list[dict[str, Any]], *, index: int, branch: int, instr: str | None
    ) -> Attempt:
        started = utcnow()
        output = await self._call(messages, stage="attempt", index=index, branch=branch)
        attempt = Attempt.from_output(
            output, index=index, branch=branch, instruction=instr, started_at=started
        )
        assert isinstance(attempt, Attempt)
        await self.emit(
            AttemptFinished(trajectory_id=self.id, task_id=self.task.id, attempt=attempt)
        )
        return attempt

    async def _verify(self, attempt: Attempt) -> tuple[Attempt, Verdict]:
        """Judge the attempt; when it passes and tools are to be run, run its calls. Returns the
        attempt (with its tool results, when run) and the verdict."""
        self.stage = "verify"
        start = time.perf_counter()
        output = attempt.as_output()
        result = await self.verifier.judge(output, self.task)
        judged_by = self.verifier.type
        if result.passed and self.execute_tools is not None and attempt.tool_calls:
            self.stage = "tools"
            outcome = await self.execute_tools(output, self.task)
            attempt = attempt.model_copy(update={"tool_results": outcome.results})
            if outcome.error is not None:
                judged_by = "tool_execution"
                result = Verdict(
                    passed=False,
                    feedback=outcome.error,
                    details={"error_type": "tool_error", "tool": outcome.tool},
                )
        verdict = result.model_copy(
            update={
                "verifier": judged_by,
                "attempt_index": attempt.index,
                "branch": attempt.branch,
                "latency_s": time.perf_counter() - start,
            }
        )
        await self.emit(Verified(trajectory_id=self.id, task_id=self.task.id, verdict=verdict))
        return attempt, verdict

    async def _branch(
        self,
        prompt: list[dict[str, Any]],
        instruction: str,
        failed_index: int,
        *,
        branch: int,
        given: str | None = None,
    ) -> Candidate:
        """One reflection and its retry; ``given``: the reflection's text, not generated."""
        task = self.task
        await self.emit(
            ReflectionStarted(
                trajectory_id=self.id, task_id=task.id, after_attempt=failed_index, branch=branch
            )
        )
        started = utcnow()
        if given is None:
            output = await self._call(prompt, stage="reflection", index=failed_index, branch=branch)
        else:
            output = ModelOutput(text=given, finish_reason="stop")
        prompt_name = self.engine.prompts.get("reflection", task.family).name
        reflection = Reflection.from_output(
            output,
            after_attempt=failed_index,
            branch=branch,
            instruction=instruction,
            prompt_name=prompt_name,
            started_at=started,
            given=given is not None,
        )
        assert isinstance(reflection, Reflection)
        await self.emit(
            ReflectionFinished(trajectory_id=self.id, task_id=task.id, reflection=reflection)
        )
        retry_instruction = self._retry_instruction()
        messages = retry_messages(prompt, reflection, retry_instruction)
        await self.emit(
            RetryStarted(
                trajectory_id=self.id, task_id=task.id, index=failed_index + 1, branch=branch
            )
        )
        attempt, verdict = await self._verify(
            await self._generate_attempt(
                messages, index=failed_index + 1, branch=branch, instr=retry_instruction
            )
        )
        return Candidate(
            branch=branch,
            reflection=reflection,
            retry=attempt,
            verdict=verdict,
            reward=1.0 if verdict.passed else 0.0,
        )

    async def _group(
        self, prompt: list[dict[str, Any]], instruction: str, failed_index: int
    ) -> ReflectionGroup:
        k = self.engine.options.reflections
        cancel_on_success = self.engine.options.cancel_on_success
        pending: dict[asyncio.Task[Candidate], int] = {
            asyncio.create_task(self._branch(prompt, instruction, failed_index, branch=b)): b
            for b in range(k)
        }
        results: dict[int, Candidate] = {}
        winner: int | None = None
        first_infra: InfrastructureError | None = None
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    b = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        cand = fut.result()
                        results[b] = cand
                        if winner is None and cand.reward == 1.0:
                            winner = b
                    elif isinstance(exc, InfrastructureError):
                        first_infra = first_infra or exc
                        results[b] = Candidate(
                            branch=b, status="error", error=f"{type(exc).__name__}: {exc}"
                        )
                    else:
                        raise exc
                if winner is not None and cancel_on_success and pending:
                    for fut in pending:
                        fut.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    for b in pending.values():
                        results[b] = Candidate(branch=b, status="cancelled")
                    pending.clear()
        finally:
            for fut in pending:
                fut.cancel()
        completed = [b for b in sorted(results) if results[b].status == "completed"]
        if not completed:
            assert first_infra is not None
            raise first_infra
        chosen = winner if winner is not None else completed[0]
        return ReflectionGroup(
            after_attempt=failed_index,
            candidates=[results[b] for b in range(k)],
            chosen=chosen,
        )


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex
