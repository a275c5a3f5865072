"""No key and no token in exceptions, reprs or log records; the Vertex file's lifetime;
``SecretStr`` with and without pydantic."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import Keyward

import keyward
from keyward import KeyProvider, KeywardError, RateLimitedError, SecretStr, UnavailableError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_debug_logs_hold_no_secret(
    keyward: Keyward, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="keyward")
    with KeyProvider(keyward.url, keyward.resolver, cache=False) as kp:
        kp.resolve("openai")
        kp.provision_provider_keys("azure")
        kp.provision_provider_keys("vertex")
        kp.provision_all_keys()
        kp.env()
        kp.get_api_key("openai")
        kp.provision_provider_keys("anthropic")
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_TOKEN", keyward.resolver)
    asyncio.run(keyward_functions())
    assert caplog.records, "the package logs at debug level"
    for record in caplog.records:
        assert record.name.startswith("keyward")
        keyward.assert_clean(record.getMessage(), "a log record")
        keyward.assert_clean(repr(record.args), "a log record's arguments")


async def keyward_functions() -> None:
    await keyward.provision_provider_keys("openai")
    await keyward.provision_all_keys()
    await keyward.get_api_key("azure")


def test_errors_from_answers_hold_no_secret(keyward: Keyward) -> None:
    failures: list[KeywardError] = []
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        for call in (
            lambda: kp.resolve("openai", name="missing"),
            lambda: kp.resolve("no-such-provider"),
            lambda: kp.discover_models(keyward.openai_credential),
        ):
            with pytest.raises(KeywardError) as caught:
                call()
            failures.append(caught.value)
    for error in failures:
        assert error.status is not None and str(error.status) in str(error)
        keyward.assert_clean(f"{error} {error!r} {error.detail} {error.problem}", "an error")


def test_config_repr_shows_the_hint_only(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        configs = [kp.resolve(p) for p in ("openai", "azure", "vertex")]
    for config in configs:
        keyward.assert_clean(
            repr(config) + str(config) + repr(config.api_key) + str(config.api_key),
            "a config's repr",
        )


def test_secret_str() -> None:
    secret = SecretStr("sk-hidden-value")
    assert secret.get_secret_value() == "sk-hidden-value"
    assert repr(secret) == "SecretStr('**********')"
    assert str(secret) == "**********"
    assert secret == SecretStr("sk-hidden-value") and secret != SecretStr("other")
    assert hash(secret) == hash(SecretStr("sk-hidden-value"))
    assert len(secret) == len("sk-hidden-value") and bool(secret)


def test_secret_str_without_pydantic() -> None:
    """The package's own SecretStr, when pydantic cannot be imported."""
    script = textwrap.dedent("""
        import sys
        sys.modules["pydantic"] = None  # import pydantic now fails
        from keyward import SecretStr
        assert SecretStr.__module__ == "keyward._secret", SecretStr.__module__
        s = SecretStr("sk-hidden-value")
        assert s.get_secret_value() == "sk-hidden-value"
        assert repr(s) == "SecretStr('**********')" and str(s) == "**********"
        assert s == SecretStr("sk-hidden-value") and s != SecretStr("x") and s != "sk-hidden-value"
        assert hash(s) == hash(SecretStr("sk-hidden-value"))
        assert len(s) == 15 and bool(s) and not SecretStr("")
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_credential_files_are_removed_at_exit(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, stat
        from keyward._files import private_file
        path = private_file('{"type": "service_account"}')
        assert private_file('{"type": "service_account"}') == path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        print(path)
    """)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.parent.parent == runtime  # under XDG_RUNTIME_DIR
    assert not path.exists() and not path.parent.exists()


def test_a_proxy_quoting_the_token_back_does_not_put_it_in_the_error() -> None:
    """What stands between the client and Keyward may echo the request; the error does not."""
    token = "kwt_" + "q" * 40

    def proxy(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        if request.url.path.endswith("/env"):
            return httpx.Response(429, headers={"retry-after": "7"}, json={"detail": "slow down"})
        return httpx.Response(503, json={"detail": f"upstream refused {echoed}"})

    with KeyProvider(
        "http://keyward.test", token, org="acme", transport=httpx.MockTransport(proxy)
    ) as kp:
        with pytest.raises(UnavailableError) as unavailable:
            kp.resolve("openai")
        with pytest.raises(RateLimitedError) as limited:
            kp.env()
    assert token not in str(unavailable.value) and token not in repr(unavailable.value)
    assert unavailable.value.retry_after is None and unavailable.value.status == 503
    assert limited.value.retry_after == 7.0 and limited.value.status == 429


SIGNALLED = textwrap.dedent("""
    import os, signal, sys, time
    import keyward
    from keyward._files import private_file
    # As a program normally starts, whatever this test runs under (nohup, a background job).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.argv[1] == "own":
        def handler(signum, frame):
            keyward.remove_private_files()
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
    path = private_file('{"type": "service_account"}')
    if sys.argv[1] == "own":
        assert signal.getsignal(signal.SIGTERM) is handler, "the program's handler was replaced"
    else:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    print(path, flush=True)
    time.sleep(10)
""")


@pytest.mark.parametrize(
    ("handlers", "signum", "returncode"),
    [
        ("default", signal.SIGTERM, -signal.SIGTERM),
        ("default", signal.SIGHUP, -signal.SIGHUP),
        ("default", signal.SIGINT, -signal.SIGINT),  # KeyboardInterrupt: atexit runs
        ("own", signal.SIGTERM, 3),  # the program's handler calls remove_private_files()
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT", "own-SIGTERM-handler"],
)
def test_credential_files_are_removed_when_the_process_is_signalled(
    tmp_path: Path, handlers: str, signum: int, returncode: int
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, handlers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, "XDG_RUNTIME_DIR": str(runtime)},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the child did not write its file"
        path = Path(proc.stdout.readline().strip())
        assert path.is_file() and path.parent.parent == runtime, proc.stderr
        proc.send_signal(signum)
        assert proc.wait(timeout=5) == returncode
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
    assert not path.exists() and not path.parent.exists()
    assert list(runtime.iterdir()) == []


def test_remove_private_files(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os
        import keyward
        from keyward._files import private_file
        path = private_file('{"type": "service_account"}')
        keyward.remove_private_files()
        assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
        keyward.remove_private_files()  # nothing left: nothing to do
        again = private_file('{"type": "service_account"}')
        assert os.path.isfile(again) and os.path.dirname(again) != os.path.dirname(path)
        print(again)
    """)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert out.returncode == 0, out.stderr
    assert not Path(out.stdout.strip()).exists()  # the second one went at exit
    assert list(runtime.iterdir()) == []


def test_key_hints_look_as_the_readme_shows(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        openai, azure = kp.resolve("openai"), kp.resolve("azure")
    assert openai.key_hint == "sk-..." + keyward.openai_key[-4:]
    assert azure.key_hint == keyward.azure_key[:3] + "..." + keyward.azure_key[-4:]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "ProviderConfig(provider='azure_openai', key_hint='abc...wxyz'," in readme
    assert "abcd...wxyz" not in readme


def test_a_file_first_written_from_another_thread_gets_no_signal_handler(tmp_path: Path) -> None:
    """Python sets signal handlers from the main thread only: a file first written from another
    thread leaves SIGTERM's default in place (and so dies with it on SIGTERM). The README says
    so, and what to do about it."""
    script = textwrap.dedent("""
        import signal, threading
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from keyward._files import private_file
        paths = []
        thread = threading.Thread(target=lambda: paths.append(private_file("{}")))
        thread.start()
        thread.join()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        private_file("{}")  # already written: the main thread installs nothing either
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        private_file('{"other": 1}')  # a new file, from the main thread: now it does
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        print("ok")
    """)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert out.returncode == 0, out.stderr
    assert list(runtime.iterdir()) == []
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## The one file") :]
    section = " ".join(section[: section.index("\n## ", 1)].split())
    assert "between Python bytecodes" in section
    assert "from a thread other than the main one" in section
