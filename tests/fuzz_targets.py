"""Coverage-guided fuzzing of the parsers that read model output (atheris, libFuzzer).

Each target feeds arbitrary text, as a model could write it, to a real verifier built from a task
of the packaged data, and calls its ``verify`` directly. The contract: a :class:`Verdict` comes
back, whatever the text; any exception is a crash (atheris then exits non-zero and prints the
input). libFuzzer's ``-timeout`` catches inputs that take too long. Usage::

    python -m tests.fuzz_targets countdown -max_total_time=60 -timeout=5
"""

from __future__ import annotations

import itertools
import sys

import atheris

with atheris.instrument_imports(include=["rrr_agent.verifiers"]):
    # The built-in verifiers load lazily: import them here, so they are instrumented.
    import rrr_agent.verifiers.bfcl_ast
    import rrr_agent.verifiers.countdown
    import rrr_agent.verifiers.numeric
    import rrr_agent.verifiers.toolcalls  # noqa: F401
    from rrr_agent import ModelOutput, Verdict
    from rrr_agent.tasksets import get_taskset
    from rrr_agent.verifiers import build_verifier

#: target name → the task set whose first task supplies the verifier
TARGETS = {
    "countdown": "countdown-test",
    "numeric": "gsm8k-test",
    "bfcl_python": "bfcl-simple_python",
    "bfcl_parallel": "bfcl-parallel_multiple",
    "bfcl_java": "bfcl-simple_java",
    "bfcl_javascript": "bfcl-simple_javascript",
}


#: Seed inputs per target (libFuzzer mutates them): well-formed and nearly well-formed answers.
SEEDS = {
    "countdown": ["<answer>(25 - 5) * 4 + 3</answer>", "(1 + 2) * 3 = 9", "75 / (3 - 3)",
                  "<answer>2 ** 99999</answer>", "((((((1))))))+-+-2"],
    "numeric": ["The answer is 42.", "\\boxed{3/4}", "#### -1,234.50", "1e999999 and 0x1F",
                "\\boxed{\\frac{1}{2}} then 7"],
    "bfcl_python": ["[math_factorial(number=5)]", "[f(a=1, b=[1, 2], c={'x': 'y'}, d=-3.5e2)]",
                    "```python\n[g(x=1 << 3, y='a' * 3, z=7 ** 99)]\n```", "f(a=f(b=1))",
                    "[a.b.c(x=(1, 2), y=None, z=True)]"],
    "bfcl_parallel": ["[f(a=1), g(b='x')]", "[f(a=[{'k': [1, {'z': 2}]}])] [h()]"],
    "bfcl_java": ['[Foo.bar(list="new ArrayList<>(Arrays.asList(1, 2))", m="new HashMap<>()")]',
                  "[f(x='new int[]{1, 2}', y='3.5f', z='true')]"],
    "bfcl_javascript": ["[f(a='[1, 2, {\"k\": 3}]', b='{key: \"v\"}', c='null')]",
                        "[g(x='new Date()', y='-Infinity')]"],
}  # fmt: skip


def write_seeds(name: str, folder: str) -> None:
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(SEEDS[name]):
        (out / f"seed-{i}").write_bytes(seed.encode())


def main() -> None:
    name, args = sys.argv[1], sys.argv[2:]
    (task,) = itertools.islice(get_taskset(TARGETS[name]).load(), 1)
    verifier = build_verifier(task.verifier)

    def one(data: bytes) -> None:
        text = data[:8192].decode("utf-8", "replace")  # seeds are plain UTF-8 text
        verdict = verifier.verify(ModelOutput(text=text), task)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"{name}: verify returned {type(verdict).__name__}")

    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
