"""rrr: Reflect, Retry, Reward.

Wrap any model in attempt → verify → reflect → retry, log every trajectory as JSONL, and train the
model's reflections with GRPO (``rrr_trainer``). Importing this package is cheap: litellm is
imported on the first model call, and torch, transformers, trl, vllm and textual never.

    from rrr_agent import Engine, Task

    engine = Engine("hosted_vllm/gemma", api_base="http://127.0.0.1:8000/v1")
    task = Task.from_prompt("What is 17 * 3?", {"type": "exact", "expected": "51"}, family="math")
    trajectory = engine.run_sync(task)

Tools and multi-step turns: :class:`Agent` (``rrr_agent._agent``).
"""

from ._agent import Agent, AgentResult
from ._chat import VERIFIER_KINDS, ChatSession, ChatStore, SessionInfo, chat_verifier
from ._conversation import build_conversation, reflection_messages, retry_messages
from ._engine import Engine, RunResult, ToolExecutor, ToolOutcome
from ._errors import (
    ConfigError,
    DataError,
    InfrastructureError,
    LogFileError,
    MalformedResponse,
    MissingExtraError,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeout,
    RateLimited,
    RRRError,
    ServeError,
    ServerError,
    TaskFileError,
    ToolError,
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
    TurnFinished,
    Verified,
)
from ._extras import require_extra
from ._files import write_text_atomic
from ._models import LiteLLMClient, ModelClient, RetryPolicy
from ._prompts import Prompt, PromptLibrary
from ._scripted import ScriptedError, ScriptedModel, ScriptedReply
from ._secrets import redact, register_secret
from ._settings import Settings, data_dir, key_line, load_settings, read_toml
from ._store import (
    ErrorLog,
    JsonlAppender,
    LineProblem,
    ReadReport,
    TrajectoryFilter,
    TrajectoryStore,
    read_trajectories,
)
from ._summary import Summary, summarize
from ._tasks import iter_tasks, load_tasks, write_tasks
from ._tools import Tool, ToolRunner, as_tool
from ._types import (
    SCHEMA_VERSION,
    Attempt,
    Candidate,
    FunctionCall,
    LoopOptions,
    Message,
    ModelOutput,
    Outcome,
    Reflection,
    ReflectionGroup,
    SamplingParams,
    Task,
    ToolCall,
    Trajectory,
    Usage,
    Verdict,
    VerifierSpec,
)
from .registry import Checkpoint, Registry
from .verifiers import Verifier, build_verifier, register_verifier

__all__ = [
    "SCHEMA_VERSION",
    "VERIFIER_KINDS",
    "Agent",
    "AgentResult",
    "Attempt",
    "AttemptFinished",
    "AttemptStarted",
    "Candidate",
    "ChatSession",
    "ChatStore",
    "Checkpoint",
    "ConfigError",
    "DataError",
    "Engine",
    "ErrorLog",
    "Event",
    "FunctionCall",
    "GroupFinished",
    "Hooks",
    "InfrastructureError",
    "JsonlAppender",
    "LineProblem",
    "LiteLLMClient",
    "LogFileError",
    "LoopOptions",
    "MalformedResponse",
    "Message",
    "MissingExtraError",
    "ModelClient",
    "ModelConnectionError",
    "ModelOutput",
    "ModelRequestError",
    "ModelTimeout",
    "Outcome",
    "Prompt",
    "PromptLibrary",
    "RRRError",
    "RateLimited",
    "ReadReport",
    "Reflection",
    "ReflectionFinished",
    "ReflectionGroup",
    "ReflectionStarted",
    "Registry",
    "RetryPolicy",
    "RetryStarted",
    "RunFailed",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "SamplingParams",
    "ScriptedError",
    "ScriptedModel",
    "ScriptedReply",
    "ServeError",
    "ServerError",
    "SessionInfo",
    "Settings",
    "Summary",
    "Task",
    "TaskFileError",
    "TokenDelta",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolExecutor",
    "ToolOutcome",
    "ToolRunner",
    "Trajectory",
    "TrajectoryFilter",
    "TrajectoryStore",
    "TransportRetry",
    "TurnFinished",
    "Usage",
    "Verdict",
    "VerificationFailed",
    "Verified",
    "Verifier",
    "VerifierError",
    "VerifierSpec",
    "VerifierSpecError",
    "as_tool",
    "build_conversation",
    "build_verifier",
    "chat_verifier",
    "data_dir",
    "iter_tasks",
    "key_line",
    "load_settings",
    "load_tasks",
    "read_toml",
    "read_trajectories",
    "redact",
    "reflection_messages",
    "register_secret",
    "register_verifier",
    "require_extra",
    "retry_messages",
    "summarize",
    "write_tasks",
    "write_text_atomic",
]
