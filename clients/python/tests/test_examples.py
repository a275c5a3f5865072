"""The examples, run as programs are: a fresh process with only Keyward's settings, the real
OpenAI SDK, and the mock provider behind Keyward. They need ``openai`` (the ``test`` extra);
without it they fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ANSWER, Keyward

PACKAGE = Path(__file__).resolve().parents[1]


def run_example(name: str, keyward: Keyward, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONPATH": str(PACKAGE / "src"),
        "KEYWARD_URL": keyward.url,
        **env,
    }
    out = subprocess.run(
        [sys.executable, str(PACKAGE / "examples" / name)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    keyward.assert_clean(out.stdout, f"{name}'s output")
    keyward.assert_clean(out.stderr, f"{name}'s errors")
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_openai_sdk_is_installed() -> None:
    import openai

    assert openai.__version__


def test_open_notebook_style(keyward: Keyward) -> None:
    calls = len(keyward.upstream.calls)
    out = run_example("open_notebook_style.py", keyward, KEYWARD_TOKEN=keyward.resolver)
    lines = out.stdout.splitlines()
    assert lines[0] == ANSWER
    assert ("POST", "/v1/chat/completions", True) in keyward.upstream.calls[calls:]
    azure = next(line for line in lines if line.startswith("azure: set "))
    assert "AZURE_OPENAI_API_KEY" in azure and "AZURE_OPENAI_ENDPOINT" in azure
    assert "  AZURE_OPENAI_ENDPOINT=https://acme-eu.openai.azure.com" in lines
    assert "  OPENAI_API_VERSION=2024-10-21" in lines
    vertex = next(line for line in lines if line.startswith("vertex: set "))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in vertex and "VERTEX_PROJECT" in vertex


def test_gateway_openai(keyward: Keyward) -> None:
    calls = len(keyward.upstream.calls)
    out = run_example("gateway_openai.py", keyward, KEYWARD_GATEWAY_TOKEN=keyward.gateway)
    assert out.stdout.strip() == ANSWER
    # The gateway put the organization's key in place of the gateway token.
    assert ("POST", "/v1/chat/completions", True) in keyward.upstream.calls[calls:]


def test_tokens_are_made_before_keyward_url_is_set() -> None:
    """`keyward token create` run after `export KEYWARD_URL=...` is a remote client without a
    token: it fails and leaves the variable empty. The docs make the token first, into a shell
    variable, and export it with KEYWARD_URL on the next line."""
    readme = (PACKAGE / "README.md").read_text().splitlines()
    example = (PACKAGE / "examples" / "gateway_openai.py").read_text().splitlines()
    notebook = (PACKAGE / "examples" / "open_notebook_style.py").read_text().splitlines()
    for where, lines, command, variable in (
        ("README", readme, "keyward token create --role resolver", "KEYWARD_TOKEN"),
        ("README", readme, "keyward gateway-token create", "KEYWARD_GATEWAY_TOKEN"),
        ("gateway_openai.py", example, "keyward gateway-token create", "KEYWARD_GATEWAY_TOKEN"),
        (
            "open_notebook_style.py",
            notebook,
            "keyward token create --role resolver",
            "KEYWARD_TOKEN",
        ),
    ):
        made = [i for i, line in enumerate(lines) if f"$({command}" in line]
        assert len(made) == 1, f"{where}: {command}"
        shell_variable = re.match(r"\s*([A-Z_]+)=\$\(keyward ", lines[made[0]])
        assert shell_variable, f"{where}: {lines[made[0]].strip()}"
        export = lines[made[0] + 1].split()
        assert export[:2] == ["export", export[1]] and export[1].startswith("KEYWARD_URL="), where
        assert f"{variable}=${shell_variable.group(1)}" in export, f"{where}: {export}"


def test_timeout_is_documented_as_each_requests_deadline() -> None:
    """``timeout`` bounds each request to the server; a method may make several."""
    from keyward import AsyncKeyProvider, KeyProvider

    readme = " ".join((PACKAGE / "README.md").read_text().split())
    for doc in (KeyProvider.__doc__ or "", AsyncKeyProvider.__doc__ or "", readme):
        text = " ".join(doc.split())
        assert "may take in all" not in text and "each call to the server" not in text
        assert "each request to the server" in text
        assert "get_api_key" in text and "provision_all_keys" in text
