"""A small tool-calling app on the embedded model (no network, no API key).

    python examples/tool_app.py "What is the weather in Paris?"

The agent offers two Python functions as tools. The model (google/gemma-3-270m, a base model)
answers with a call such as ``[get_weather(city="Paris")]``; the SDK checks it against the tool's
schema, runs the function, hands the result back, and the model answers in words. A call that
fails (a wrong argument, an unknown city) gets the paper's tool-call reflection and a retry. The
script prints every step, attempt and reflection, and the tokens of the whole turn. Each step is
appended to the trajectory log (``rrr logs list``), ready for training.
"""

from __future__ import annotations

import sys
from typing import Literal

from rrr_agent import Agent, ToolError, VerificationFailed, load_settings

CITIES = {"Paris": (21, "sunny"), "Berlin": (17, "cloudy"), "Madrid": (27, "sunny"),
          "Oslo": (9, "rainy"), "Rome": (25, "cloudy")}  # fmt: skip


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, object]:
    """Current weather in a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: Temperature unit.
    """
    if city not in CITIES:
        raise ToolError(f"no weather for {city!r}; known cities: {', '.join(CITIES)}")
    celsius, sky = CITIES[city]
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": temperature, "unit": unit, "sky": sky}


def list_cities() -> list[str]:
    """The cities the weather service knows."""
    return sorted(CITIES)


# A base model follows examples better than instructions: one worked exchange.
SYSTEM = """You are a weather assistant. To call a function, answer with [function(arg="value")].

User: What is the weather in Rome?
Assistant: [get_weather(city="Rome")]
Tool: {"city": "Rome", "temperature": 25, "unit": "celsius", "sky": "cloudy"}
Assistant: It is 25 degrees and cloudy in Rome.
"""


def main() -> int:
    question = " ".join(sys.argv[1:]) or "What is the weather in Paris?"
    # Short answers: a base model rambles on when it is let.
    settings = load_settings(max_tokens=60)
    agent = Agent(tools=[get_weather, list_cities], system=SYSTEM, max_steps=4, settings=settings)
    print(f"model: {agent.model}\nuser:  {question}")
    try:
        result = agent.run_sync(question)
    except VerificationFailed as exc:
        print(f"no valid answer after {sum(len(t.attempts) for t in exc.trajectories)} attempts")
        return 1
    for step, traj in enumerate(result.trajectories):
        for i, (attempt, verdict) in enumerate(zip(traj.attempts, traj.verdicts, strict=True)):
            calls = ", ".join(
                f"{c.function.name}({c.function.arguments})" for c in attempt.tool_calls or []
            )
            mark = "ok  " if verdict.passed else "FAIL"
            print(f"  step {step} attempt {i} [{mark}] {calls or attempt.text}")
            if not verdict.passed:
                print(f"      why: {verdict.feedback}")
            if attempt.tool_results and verdict.passed:
                print(f"      tool: {'; '.join(attempt.tool_results)}")
            if i < len(traj.reflections):
                print(f"      reflection: {traj.reflections[i].text}")
    usage = result.usage
    print(f"assistant: {result.text}")
    print(f"{result.attempts} attempts in {len(result.trajectories)} steps, "
          f"{usage.total_tokens} tokens (reflections and retries included)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
