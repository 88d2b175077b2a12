"""The data that crosses every boundary: tasks, attempts, verdicts, reflections, trajectories.

One schema serves the runtime (which writes it), the store, evaluation and the trainer (which
read it). Everything here is plain JSON when dumped; ``Trajectory.model_validate_json(line)``
rebuilds a logged record without the program that produced it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "Attempt",
    "Candidate",
    "FunctionCall",
    "Generation",
    "LoopOptions",
    "Message",
    "ModelOutput",
    "Outcome",
    "Reflection",
    "ReflectionGroup",
    "SamplingParams",
    "Task",
    "ToolCall",
    "Trajectory",
    "Usage",
    "Verdict",
    "VerifierSpec",
    "utcnow",
]

#: Version of the trajectory record layout. Bump it on any change a reader must know about.
#: 2: ``Attempt.tool_results`` (the SDK ran the attempt's tool calls). 3: ``Reflection.given``
#: (a text given to the model as its reflection, not written by it). Older records read as they
#: are (the new fields are optional).
SCHEMA_VERSION = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Model):
    name: str
    #: JSON text, exactly as the API returned it (it may be invalid JSON: that is the model's fault,
    #: and the verifier judges it).
    arguments: str = "{}"


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    def parsed_arguments(self) -> Any:
        """The arguments as JSON; raises ``ValueError`` when the model wrote invalid JSON."""
        return json.loads(self.function.arguments or "{}")


class Message(BaseModel):
    """One chat message in OpenAI's format. Unknown provider fields are kept, not dropped."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class VerifierSpec(BaseModel):
    """A JSON object ``{"type": ..., ...params}`` that rebuilds the same verifier anywhere."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.params()}


class Task(_Model):
    """One problem: the conversation to answer, optional tools, and how to judge the answer.

    ``family`` selects the reflection and retry prompts (``prompts/reflection/<family>.txt``):
    ``tool_call`` and ``math`` carry the paper's wording; anything else falls back to ``default``.
    When ``id`` is empty it is derived from the content, so the same task always gets the same id.
    ``chat_template_kwargs`` is sent with every model call of this task (vLLM and the local
    backend pass it to the chat template): e.g. ``{"style": "completion"}`` renders few-shot
    tasks for base models without role prefixes (``prompts/templates/transcript.jinja``).
    """

    id: str = ""
    family: str = "default"
    messages: list[Message] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    verifier: VerifierSpec
    chat_template_kwargs: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_id(self) -> Task:
        if not self.id:
            self.id = "t-" + self.content_hash()[:16]
        return self

    def content_hash(self) -> str:
        """sha256 of what defines the task (messages, tools, verifier), not its id or metadata."""
        payload: dict[str, Any] = {
            "messages": [m.to_openai() for m in self.messages],
            "tools": self.tools,
            "verifier": self.verifier.to_dict(),
        }
        if self.chat_template_kwargs:  # only when set, so older tasks keep their hash
            payload["chat_template_kwargs"] = self.chat_template_kwargs
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()

    def user_text(self) -> str:
        """The text of the last user message: the question itself, since few-shot examples sit
        in earlier turns. Text parts of a multi-part message are joined; "" when there is none."""
        for message in reversed(self.messages):
            if message.role != "user":
                continue
            if isinstance(message.content, list):
                parts = [p.get("text") for p in message.content if p.get("type") == "text"]
                return "\n".join(t for t in parts if isinstance(t, str))
            return message.content or ""
        return ""

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        verifier: VerifierSpec | dict[str, Any],
        *,
        system: str | None = None,
        family: str = "default",
        tools: list[dict[str, Any]] | None = None,
        id: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Task:
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        spec = verifier if isinstance(verifier, VerifierSpec) else VerifierSpec(**verifier)
        return cls(
            id=id,
            family=family,
            messages=messages,
            tools=tools,
            verifier=spec,
            metadata=metadata or {},
        )

    def openai_messages(self) -> list[dict[str, Any]]:
        return [m.to_openai() for m in self.messages]


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class SamplingParams(_Model):
    """Sampling settings sent with every call; recorded in each trajectory."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    #: Cap for reflection calls; ``None`` means ``max_tokens``.
    reflection_max_tokens: int | None = None
    #: Temperature of reflection calls; ``None`` means ``temperature``. Sampling k varied
    #: reflections while attempts and retries stay greedy keeps the retry's reward about the
    #: reflection, not the retry's own luck.
    reflection_temperature: float | None = Field(default=None, ge=0)
    #: Write branch 0 of each reflection group greedily (temperature 0), whatever
    #: ``reflection_temperature`` says; the other branches are sampled. A group of k sampled
    #: reflections may never contain the text a greedy evaluation sees: learning run 74's trained
    #: model wrote one phrase for 64 of 67 held-out failures, while its training samples spread
    #: that phrase over dozens of wordings that no exact-text rule caught. With k = 1 the one
    #: reflection is greedy.
    reflection_greedy_branch: bool = False
    #: The run's seed. Each request is seeded with :func:`request_seed`, a stable mix of it, the
    #: task's id and the branch: a rerun repeats every sample, and no two tasks or branches
    #: share one random stream. (Learning run 72's sample, seeded with the bare seed plus the
    #: branch, drew the same reflection for every problem on some branches: 100 % of 109
    #: problems on two of the base model's eight.)
    seed: int | None = None
    stop: list[str] | None = None
    #: Provider-specific parameters passed through unchanged (e.g. ``{"top_k": 20}``).
    extra: dict[str, Any] = Field(default_factory=dict)

    def request_params(
        self, *, reflection: bool = False, task_id: str = "", branch: int = 0
    ) -> dict[str, Any]:
        """One request's parameters: for a reflection (``reflection``) its own temperature (0 on
        branch 0 with ``reflection_greedy_branch``) and token cap, and the seed of ``task_id``'s
        branch ``branch`` (:func:`request_seed`)."""
        params: dict[str, Any] = {}
        temperature = self.temperature
        if reflection and self.reflection_temperature is not None:
            temperature = self.reflection_temperature
        if reflection and self.reflection_greedy_branch and branch == 0:
            temperature = 0.0
        if temperature is not None:
            params["temperature"] = temperature
        if self.top_p is not None:
            params["top_p"] = self.top_p
        max_tokens = self.max_tokens
        if reflection and self.reflection_max_tokens is not None:
            max_tokens = self.reflection_max_tokens
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self.seed is not None:
            params["seed"] = request_seed(self.seed, task_id, branch)
        if self.stop:
            params["stop"] = list(self.stop)
        params.update(self.extra)
        return params


def request_seed(seed: int, task_id: str, branch: int = 0) -> int:
    """The seed one request is sent with: a stable 31-bit hash of the run's ``seed``, the task's
    id and the branch (one of k sampled reflections). A server that seeds each request (vLLM)
    draws one random stream per seed, so the bare seed on every task would give each branch the
    same draws on every problem, and a peaked model the same text."""
    digest = hashlib.sha256(f"{seed}\0{task_id}\0{branch}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class LoopOptions(_Model):
    """How the attempt → verify → reflect → retry loop behaves; recorded in each trajectory."""

    #: Retries after the first attempt (the paper uses 1).
    max_retries: int = Field(default=1, ge=0)
    #: Show the verifier's feedback text to the model before it reflects.
    show_feedback: bool = False
    #: Reflections sampled in parallel after each failure (k). The first whose retry passes wins;
    #: all k are logged as a group with their retry rewards.
    reflections: int = Field(default=1, ge=1)
    #: With k > 1: stop the other branches as soon as one passes (faster; their rewards are lost).
    cancel_on_success: bool = False
    #: False = the plain-retry control: after a failure the model is only told
    #: "That was wrong. Try again." (``prompts/plain_retry/<family>.txt``), with no reflection.
    reflect: bool = True

    @model_validator(mode="after")
    def _plain_retry_has_one_branch(self) -> LoopOptions:
        if not self.reflect and self.reflections != 1:
            raise ValueError("reflections (k) must be 1 when reflect is False (plain retry)")
        return self


class ModelOutput(_Model):
    """What one model call returned."""

    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    #: The model name the server reported (may differ from the requested model string).
    response_model: str | None = None
    #: Per-token log-probabilities of the output, when the server returned them.
    logprobs: list[float] | None = None


class Generation(_Model):
    """A model call inside a trajectory (an attempt or a reflection)."""

    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    logprobs: list[float] | None = None
    started_at: datetime = Field(default_factory=utcnow)
    #: The user message that asked for this generation (None for the first attempt, whose
    #: prompt is the task itself). Stored verbatim so the conversation can be rebuilt exactly.
    instruction: str | None = None
    #: Which of the k parallel branches produced it (0 when k = 1 or for the first attempt).
    branch: int = 0

    @classmethod
    def from_output(cls, output: ModelOutput, **fields: Any) -> Any:
        return cls(
            text=output.text,
            tool_calls=output.tool_calls,
            finish_reason=output.finish_reason,
            usage=output.usage,
            latency_s=output.latency_s,
            logprobs=output.logprobs,
            **fields,
        )

    def as_output(self) -> ModelOutput:
        return ModelOutput(
            text=self.text,
            tool_calls=self.tool_calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            latency_s=self.latency_s,
            logprobs=self.logprobs,
        )


class Attempt(Generation):
    """An answer to the task. ``index`` 0 is the first try, 1 the first retry, and so on.

    ``tool_results`` holds, when the runtime ran the attempt's tool calls (the SDK), one result
    text per call, in order: what the tool returned, or the error that made the attempt fail.
    """

    index: int = 0
    tool_results: list[str] | None = None


class Reflection(Generation):
    """The model's self-reflection after attempt ``after_attempt`` failed."""

    after_attempt: int = 0
    #: Prompt file the instruction came from, e.g. ``reflection/math``.
    prompt_name: str = ""
    #: True when the text was not written by the model in this conversation but given to it
    #: (:meth:`~rrr_agent.Engine.retry_after`; learning rounds' plain branch): its retry is the
    #: model's, its text is not, and it has no log-probs.
    given: bool = False


class Verdict(_Model):
    """A verifier's judgement of one attempt.

    ``feedback`` may be shown to the model (when the loop is told to), so it must not leak the
    reference answer; ``details`` are never shown to the model.
    """

    passed: bool
    feedback: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    verifier: str = ""
    attempt_index: int = 0
    branch: int = 0
    latency_s: float = 0.0


class Candidate(_Model):
    """One of k reflections for the same failure, with the retry it led to and its reward."""

    branch: int
    reflection: Reflection | None = None
    retry: Attempt | None = None
    verdict: Verdict | None = None
    #: 1.0 when the retry passed, 0.0 when it failed, None when it never finished.
    reward: float | None = None
    status: Literal["completed", "cancelled", "error"] = "completed"
    error: str | None = None


class ReflectionGroup(_Model):
    """k reflections sampled for one failed attempt: the unit the offline trainer learns from."""

    after_attempt: int
    candidates: list[Candidate]
    #: Branch whose reflection and retry continue the trajectory.
    chosen: int

    def rewards(self) -> list[float | None]:
        return [c.reward for c in self.candidates]


class Outcome(StrEnum):
    PASSED_FIRST_TRY = "passed_first_try"
    PASSED_AFTER_RETRY = "passed_after_retry"
    FAILED = "failed"


class Trajectory(_Model):
    """Everything that happened while solving one task: a single JSONL line in the store.

    ``attempts[i]`` was judged by ``verdicts[i]``; ``reflections[i]`` was written after
    ``attempts[i]`` failed and precedes ``attempts[i + 1]``. With k > 1 reflections per failure,
    ``groups`` holds all k candidates and their rewards; the main line follows the chosen one.
    """

    schema_version: int = SCHEMA_VERSION
    kind: Literal["trajectory"] = "trajectory"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    task: Task
    model: str
    model_revision: str | None = None
    response_model: str | None = None
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    options: LoopOptions = Field(default_factory=LoopOptions)
    #: Prompt file name → content hash, for every prompt this trajectory used.
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    reflections: list[Reflection] = Field(default_factory=list)
    groups: list[ReflectionGroup] = Field(default_factory=list)
    outcome: Outcome = Outcome.FAILED
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime = Field(default_factory=utcnow)
    rrr_version: str = ""

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is newer than this rrr understands ({SCHEMA_VERSION}); "
                "upgrade rrr to read it"
            )
        return v

    @property
    def passed(self) -> bool:
        return self.outcome is not Outcome.FAILED

    @property
    def first_try_passed(self) -> bool:
        return self.outcome is Outcome.PASSED_FIRST_TRY

    def passed_within(self, tries: int) -> bool:
        """True when one of the first ``tries`` main-line attempts passed."""
        return any(v.passed for v in self.verdicts[:tries])

    @property
    def final_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def total_usage(self) -> Usage:
        """Tokens of every call made for this trajectory, including all k branches."""
        total = Usage()
        counted: set[tuple[str, int, int]] = set()
        for a in self.attempts:
            total += a.usage
            counted.add(("a", a.index, a.branch))
        for r in self.reflections:
            total += r.usage
            counted.add(("r", r.after_attempt, r.branch))
        for g in self.groups:
            for c in g.candidates:
                if c.reflection and ("r", c.reflection.after_attempt, c.branch) not in counted:
                    total += c.reflection.usage
                if c.retry and ("a", c.retry.index, c.branch) not in counted:
                    total += c.retry.usage
        return total

    def usage_by_stage(self) -> dict[str, Usage]:
        """Tokens split into first attempt, reflections and retries (all branches)."""
        first = self.attempts[0].usage if self.attempts else Usage()
        reflections = Usage()
        retries = Usage()
        total = self.total_usage()
        for r in self._all_reflections():
            reflections += r.usage
        retries = Usage(
            prompt_tokens=total.prompt_tokens - first.prompt_tokens - reflections.prompt_tokens,
            completion_tokens=total.completion_tokens
            - first.completion_tokens
            - reflections.completion_tokens,
            total_tokens=total.total_tokens - first.total_tokens - reflections.total_tokens,
        )
        return {"first_attempt": first, "reflections": reflections, "retries": retries}

    def _all_reflections(self) -> list[Reflection]:
        seen: set[tuple[int, int]] = set()
        out: list[Reflection] = []
        for r in self.reflections:
            seen.add((r.after_attempt, r.branch))
            out.append(r)
        for g in self.groups:
            for c in g.candidates:
                if c.reflection and (c.reflection.after_attempt, c.branch) not in seen:
                    out.append(c.reflection)
        return out

    def conversation(self) -> list[dict[str, Any]]:
        """The main-line conversation as OpenAI messages, rebuilt from the record alone."""
        from ._conversation import build_conversation

        return build_conversation(self.task, self.attempts, self.reflections)
