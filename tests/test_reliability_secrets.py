"""Secrets: a planted API key and a planted bearer token are used for real (the CLI against an
upstream that rejects the key and echoes it back, the proxy with both, a nightly dry run), then
every file written during the run, every response body and all console output are scanned."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rrr_agent import load_settings, redact
from rrr_agent.proxy import create_app
from rrr_agent.testing import AppServer, StubOpenAIServer, StubResponse

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

KEY = f"sk-planted-{secrets.token_hex(12)}"
TOKEN = f"tok-planted-{secrets.token_hex(12)}"


def _echo(status: int) -> StubResponse:
    """What some providers do: put the rejected key in the error message."""
    body = {"error": {"message": f"Incorrect API key provided: {KEY}. Bearer {KEY}",
                      "type": "invalid_request_error", "code": "invalid_api_key"}}  # fmt: skip
    return StubResponse(status=status, body=json.dumps(body))


def _scan(root: Path, texts: list[str]) -> list[str]:
    leaks = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (KEY, TOKEN):
                if secret.encode() in data:
                    leaks.append(f"{path}: {secret[:12]}...")
    for i, text in enumerate(texts):
        for secret in (KEY, TOKEN):
            if secret in text:
                leaks.append(f"output #{i}: {secret[:12]}...")
    return leaks


def test_planted_key_and_token_never_reach_a_file_or_an_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    outputs: list[str] = []
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"t{i}",
                    "messages": [{"role": "user", "content": "2+2?"}],
                    "verifier": {"type": "exact", "expected": "4"},
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    with StubOpenAIServer(default=StubResponse(text="5")) as upstream:
        # 1. The CLI: a rejected key (401, echoed), a 500 echoing it, then answers that fail the
        #    check and go through reflection and retry (trajectories written).
        upstream.plan(_echo(401), _echo(500))
        env = {**os.environ, "RRR_HOME": str(home), "RRR_API_KEY": KEY,
               "RRR_TRANSPORT_TRIES": "1", "RRR_CONCURRENCY": "1"}  # fmt: skip
        rrr = str(Path(sys.executable).with_name("rrr"))
        done = subprocess.run(
            [rrr, "run", "--tasks", str(tasks), "-m", "openai/stub",
             "--api-base", upstream.base_url],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 3, done.stderr  # infrastructure errors: exit 3
        assert "***" in (home / "trajectories.errors.jsonl").read_text()  # it was there, blanked
        assert len((home / "trajectories.jsonl").read_text().splitlines()) == 1
        assert all(h.get("authorization") == f"Bearer {KEY}" for h in upstream.headers)

        # 2. The proxy, with the key upstream and the token in front.
        settings = load_settings(
            model="openai/stub", api_base=upstream.base_url, api_key=KEY, transport_tries=1,
            log_path=tmp_path / "proxy" / "proxy.jsonl",
        )  # fmt: skip
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with AppServer(create_app(settings, upstream="openai/stub", token=TOKEN)) as proxy:
            url = f"{proxy.base_url}/chat/completions"
            auth = {"authorization": f"Bearer {TOKEN}"}
            for body in (ask, {**ask, "tools": tools}):
                upstream.plan(_echo(401))
                r = httpx.post(url, json=body, headers=auth, timeout=60)
                outputs.append(r.text)
                assert r.status_code in (401, 502), r.text
            wrong = httpx.post(url, json=ask, headers={"authorization": "Bearer nope"}, timeout=60)
            outputs.append(wrong.text)
            assert wrong.status_code == 401
            ok = httpx.post(url, json={**ask, "tools": tools}, headers=auth, timeout=60)
            outputs.append(ok.text)
            assert ok.status_code == 200

    # 3. A nightly dry run with the key in its environment.
    (tmp_path / "nightly.toml").write_text(
        f'[nightly]\nlogs = ["{home / "trajectories.jsonl"}"]\nmin_failures = 1\n'
    )
    nightly = subprocess.run(
        [rrr, "nightly", "--dry-run", "--config", str(tmp_path / "nightly.toml")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    outputs += [nightly.stdout, nightly.stderr]
    assert nightly.returncode in (0, 5), nightly.stderr[-2000:]

    leaks = _scan(tmp_path, outputs)
    assert not leaks, leaks
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5  # logs, error logs, proxy logs, registry, nightly report


def test_redact_blanks_registered_env_and_shaped_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-key-1234567")
    text = "key acme-key-1234567, Bearer abcdefgh12345, sk-proj-abcdefghij, fine words"
    assert redact(text) == "key ***, Bearer ***, sk-***, fine words"
