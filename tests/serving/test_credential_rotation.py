"""Serving credentials rotate without a failed call: the bearer-token set and the TLS pair are
re-read from watched files (in-process server) and on SIGHUP (``mem serve`` as a process), while
clients call without pause, on kept connections and on a new TLS handshake per call."""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from mem_memory import audit, key_id
from mem_serving.credentials import CredentialError, TokenSet, fingerprint, parse_tokens
from mem_serving.settings import ServingSettings
from mem_testing.rotation import (
    Caller,
    call_once,
    cert_fingerprint,
    issue,
    make_ca,
    wait_until,
    write_private,
)

from .stack import ModelStore, start_stack

ROOT = Path(__file__).resolve().parents[2]
CALLS_PER_PHASE = 10  # calls each running caller makes in each phase (waited for, not slept)


def _callers(address: str, roots: bytes, token: str) -> list[Caller]:
    return [Caller(address, roots, token).start(), Caller(address, roots, token, fresh=True).start()]


def _under_load(callers: list[Caller], calls: int = CALLS_PER_PHASE) -> None:
    """Wait until each of ``callers`` has made ``calls`` more calls (a phase under load)."""
    want = [c.calls + calls for c in callers]
    wait_until(lambda: all(c.calls >= w for c, w in zip(callers, want)), what=f"{calls} calls of each caller")


def _stop(callers: list[Caller]) -> None:
    for c in callers:
        c.stop()


def _assert_no_failure(callers: list[Caller], minimum: int = 3) -> None:
    for c in callers:
        assert c.failures == [], f"{c.token} ({'fresh' if c.fresh else 'kept'}): {c.failures[:5]}"
        assert c.ok >= minimum, f"{c.token} made only {c.ok} calls"


def test_token_set_and_certificate_rotate_under_load_from_watched_files(
    mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    ca1, ca2 = make_ca("ca-1"), make_ca("ca-2")
    (cert1, key1), (cert2, key2) = issue(ca1), issue(ca2)
    token_file, cert_file, key_file = tmp_path / "tokens", tmp_path / "server.crt", tmp_path / "server.key"
    write_private(token_file, "# current\ntoken-A\n")
    write_private(cert_file, cert1)
    write_private(key_file, key1)
    s = start_stack(
        mlflow_uri,
        tmp_path / "memory.db",
        token_file=token_file,
        tls_cert=cert_file,
        tls_key=key_file,
        credentials_poll_s=0.1,
    )
    creds = s.running.credentials
    assert creds is not None
    address = f"localhost:{s.running.port}"
    roots = ca1.cert_pem + ca2.cert_pem  # clients ready for the rotation trust both authorities
    old: list[Caller] = []
    new: list[Caller] = []
    try:
        old = _callers(address, roots, "token-A")
        _under_load(old)
        # 1. the next token joins the set: both are accepted
        write_private(token_file, "token-A\ntoken-B\n")
        wait_until(
            lambda: creds.describe()["tokens"] == [fingerprint("token-A"), fingerprint("token-B")], what="token set A+B"
        )
        new = _callers(address, roots, "token-B")
        _under_load(old + new)
        # 2. the certificate is renewed (key and certificate replaced one after the other: the
        #    watcher may see the new certificate with the old key, refuses that pair, then takes both)
        write_private(cert_file, cert2)
        write_private(key_file, key2)
        wait_until(
            lambda: creds.tls is not None and creds.tls.fingerprint == cert_fingerprint(cert2), what="new certificate"
        )
        fresh_before = new[1].ok
        _under_load(old + new)
        assert new[1].ok > fresh_before  # handshakes went on through and after the swap
        assert (
            call_once(address, ca2.cert_pem, "token-B") == grpc.StatusCode.OK
        )  # new connections get the new certificate
        assert call_once(address, ca1.cert_pem, "token-B") == grpc.StatusCode.UNAVAILABLE  # and no longer the old one
        # 3. the clients have moved to token-B; token-A leaves the set
        _stop(old)
        write_private(token_file, "token-B\n")
        wait_until(lambda: creds.describe()["tokens"] == [fingerprint("token-B")], what="token set B")
        _under_load(new)
        _stop(new)
        assert call_once(address, roots, "token-A") == grpc.StatusCode.UNAUTHENTICATED
        assert call_once(address, roots, "token-B") == grpc.StatusCode.OK
        _assert_no_failure(old + new)
        total = sum(c.calls for c in old + new)
        assert total >= 50
        logging.getLogger(__name__).info("calls during rotation: %d, failed: 0", total)
    finally:
        _stop(old + new)
        s.channel.close()
        s.running.stop(grace=1.0)


def test_a_bad_edit_keeps_the_credentials_in_force(mlflow_uri: str, tmp_path: Path, warm_features: None) -> None:
    ca = make_ca("ca")
    cert, key = issue(ca)
    _, other_key = issue(ca)
    token_file, cert_file, key_file = tmp_path / "tokens", tmp_path / "server.crt", tmp_path / "server.key"
    write_private(token_file, "token-A\n")
    write_private(cert_file, cert)
    write_private(key_file, key)
    s = start_stack(
        mlflow_uri,
        tmp_path / "memory.db",
        token_file=token_file,
        tls_cert=cert_file,
        tls_key=key_file,
        credentials_poll_s=0,
    )  # reloads only when asked (SIGHUP's path)
    address = f"localhost:{s.running.port}"
    try:
        callers = _callers(address, ca.cert_pem, "token-A")
        token_file.write_text("token-A\ntoken-B\n")
        os.chmod(token_file, 0o644)  # readable by others: refused
        write_private(key_file, other_key)  # a key that does not belong to the certificate: refused
        state = s.running.reload_credentials("test")
        assert state["changed"] == [] and state["tokens"] == [fingerprint("token-A")]
        write_private(token_file, "\n# nothing\n")  # empty: refused
        assert s.running.reload_credentials("test")["tokens"] == [fingerprint("token-A")]
        _under_load(callers)
        _stop(callers)
        _assert_no_failure(callers)
        assert call_once(address, ca.cert_pem, "token-B") == grpc.StatusCode.UNAUTHENTICATED
        write_private(token_file, "token-B\n")
        write_private(key_file, key)
        assert s.running.reload_credentials("test")["changed"] == ["tokens"]
        assert call_once(address, ca.cert_pem, "token-B") == grpc.StatusCode.OK
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_sighup_rotates_token_and_certificate_of_mem_serve_under_load(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    ca1, ca2 = make_ca("ca-1"), make_ca("ca-2")
    (cert1, key1), (cert2, key2) = issue(ca1), issue(ca2)
    memory_key = os.urandom(32)
    token_file, cert_file, key_file = tmp_path / "tokens", tmp_path / "server.crt", tmp_path / "server.key"
    write_private(token_file, "token-A\n")
    write_private(cert_file, cert1)
    write_private(key_file, key1)
    env = {
        **os.environ,
        "MEM_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MEM_QUESTDB_PG_PORT": "1",
        "MEM_SERVING_TOKEN_FILE": str(token_file),
        "MEM_SERVING_TLS_CERT": str(cert_file),
        "MEM_SERVING_TLS_KEY": str(key_file),
        "MEM_SERVING_CREDENTIALS_POLL_S": "0",  # no watcher: only SIGHUP reloads
        "MEM_MEMORY_KEY": base64.b64encode(memory_key).decode(),
    }
    env.pop("MEM_SERVING_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mem_cli.main",
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--memory-db",
            str(tmp_path / "m.db"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]

    def hup_and_wait() -> str:
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if "serving credentials reloaded (SIGHUP)" in line:
                return line
        raise AssertionError("mem serve did not log a reload after SIGHUP")

    callers: list[Caller] = []
    try:
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert ready["auth"] and ready["tls"]
        address = f"localhost:{ready['grpc'].rsplit(':', 1)[1]}"
        roots = ca1.cert_pem + ca2.cert_pem
        old = _callers(address, roots, "token-A")
        _under_load(old)
        write_private(token_file, "token-A\ntoken-B\n")
        write_private(cert_file, cert2)
        write_private(key_file, key2)
        logged = hup_and_wait()
        assert "tokens, certificate changed" in logged and "token-A" not in logged and "token-B" not in logged
        new = _callers(address, roots, "token-B")
        callers = old + new
        _under_load(callers)
        assert call_once(address, ca2.cert_pem, "token-B") == grpc.StatusCode.OK
        assert call_once(address, ca1.cert_pem, "token-A") == grpc.StatusCode.UNAVAILABLE
        _stop(old)
        write_private(token_file, "token-B\n")
        hup_and_wait()
        _under_load(new)
        _stop(new)
        assert call_once(address, roots, "token-A") == grpc.StatusCode.UNAUTHENTICATED
        _assert_no_failure(callers)
        assert proc.poll() is None  # SIGHUP reloads, it does not stop the server
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(callers)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(tmp_path / "m.db") as conn:  # starting with the memory key is in the audit trail
        opened = [(e.action, e.key_id, e.command, e.pid) for e in audit.entries(conn)]
    assert opened == [("open", key_id(memory_key), "mem serve", proc.pid)]


def test_token_set_parsing_and_matching() -> None:
    assert parse_tokens("# comment\n\n a \nb\na\n") == ("a", "b")
    with pytest.raises(CredentialError) as err:
        parse_tokens("good\nbad token-with space\n")
    assert "line 2" in str(err.value) and "space" not in str(err.value).split("line 2")[0]
    assert "bad" not in str(err.value)
    with pytest.raises(CredentialError):
        parse_tokens("# only a comment\n")
    tokens = TokenSet(["one", "two"])
    assert tokens.accepts(b"Bearer one") and tokens.accepts(b"Bearer two")
    assert not tokens.accepts(b"Bearer three") and not tokens.accepts(b"one") and not tokens.accepts(b"Bearer one ")
    assert "one" not in repr(tokens) and tokens.fingerprints() == [fingerprint("one"), fingerprint("two")]


def test_settings_read_the_token_file_and_poll_interval(tmp_path: Path) -> None:
    s = ServingSettings.from_env(
        {"MEM_SERVING_TOKEN_FILE": str(tmp_path / "t"), "MEM_SERVING_CREDENTIALS_POLL_S": "0.5"}
    )
    assert s.token_file == tmp_path / "t" and s.credentials_poll_s == 0.5 and s.token is None
    with pytest.raises(ValueError):
        ServingSettings.from_env({"MEM_SERVING_TOKEN_FILE": "t", "MEM_SERVING_TOKEN": "x"})
