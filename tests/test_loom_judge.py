"""OpenRouterJudge against a real HTTP server on 127.0.0.1 that plays a
script of responses: a verdict, a 503 then success (retry, Retry-After), a
429 with backoff, 401/403, 404, a malformed body, an off-script verdict, a
response slower than the timeout; and the key never leaking."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from meta_spider.loom.datasets import QAExample
from meta_spider.loom.collect.judge import (
    JUDGE_SYSTEM_PROMPT,
    JudgeAuthError,
    JudgeConfigError,
    JudgeHTTPError,
    JudgeNotFoundError,
    JudgeResponseError,
    JudgeRetriesExhaustedError,
    JudgeVerdict,
    JudgeVerdictError,
    OpenRouterJudge,
    parse_verdict,
)

SECRET = "sk-test-very-secret-0123456789"
KEY_ENV = "META_SPIDER_TEST_JUDGE_KEY"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> sent as is; bytes -> sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # > 0: send the body one byte per `drip` seconds, forever
    drip_headers: bool = False  # with drip: the header lines never end either
    echo_headers: bool = False  # the verdict text is the request's headers


def completion(text: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


class ScriptedServer:
    """Serves one scripted Reply per request and records each request."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.dripped = 0
        self.hung_up = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                server.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                reply = server.script.popleft() if server.script else Reply(500, "script exhausted")
                time.sleep(reply.delay)
                if reply.drip:
                    self.drip(reply)
                    return
                if reply.echo_headers:
                    reply.body = completion(json.dumps(dict(self.headers)))
                if isinstance(reply.body, bytes):
                    data = reply.body
                else:
                    payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                    data = payload.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away, as scripted

            def drip(self, reply: Reply) -> None:
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    if not reply.drip_headers:
                        self.wfile.write(b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
                    while True:  # until the client goes away
                        self.wfile.write(b"X" if reply.drip_headers else b" ")
                        self.wfile.flush()
                        server.dripped += 1
                        time.sleep(reply.drip)
                except (BrokenPipeError, ConnectionResetError):
                    server.hung_up.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/api/v1"

    def play(self, *replies: Reply) -> None:
        self.script.extend(replies)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.thread.start()
    try:
        yield scripted
    finally:
        scripted.httpd.shutdown()
        scripted.httpd.server_close()


@pytest.fixture
def make_judge(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    judges: list[OpenRouterJudge] = []
    waits: list[float] = []

    def build(**settings: Any) -> OpenRouterJudge:
        options = dict(model="test/judge-model", base_url=server.base_url, api_key_env=KEY_ENV, timeout=5.0,
                       max_retries=3, backoff=0.01, sleep=waits.append)
        options.update(settings)
        judge = OpenRouterJudge(**options)
        judge.waits = waits  # type: ignore[attr-defined]
        judge.judge = _never_leaking(judge.judge)  # type: ignore[method-assign]
        judges.append(judge)
        return judge

    yield build
    for judge in judges:
        judge.close()


def _texts_of(value: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Every text an exception (or value) can show: str, repr, each
    attribute, and the same for its cause and context."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    yield str(value)
    yield repr(value)
    if isinstance(value, (str, bytes, int, float, type(None))):
        return
    for attribute in vars(value).values() if hasattr(value, "__dict__") else ():
        yield from _texts_of(attribute, seen)
    for attribute in value.args if isinstance(value, BaseException) else ():
        yield from _texts_of(attribute, seen)
    if isinstance(value, BaseException):
        yield from _texts_of(value.__cause__, seen)
        yield from _texts_of(value.__context__, seen)


def _never_leaking(judge_method):
    """Wrap ``OpenRouterJudge.judge``: whatever it returns or raises, the key
    appears in none of its texts, byte for byte."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            verdict = judge_method(*args, **kwargs)
        except Exception as error:
            leaks = [text for text in _texts_of(error) if SECRET in text or SECRET[3:20] in text]
            assert not leaks, f"the key leaked into {type(error).__name__}: {leaks[0][:200]!r}"
            raise
        assert not [text for text in _texts_of(verdict) if SECRET in text]
        return verdict

    return checked


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test of the module: the key is in no log line at any level."""
    with caplog.at_level(logging.DEBUG):
        yield
    assert SECRET not in caplog.text and SECRET[3:20] not in caplog.text


def test_correct_verdict_and_what_reached_the_server(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(body=completion("CORRECT")), Reply(body=completion(" incorrect.\n")))
    judge = make_judge()
    verdict = judge.judge("Who wrote Dune?", "Frank Herbert wrote it.", ["Frank Herbert", "Herbert"])
    assert verdict == JudgeVerdict(correct=True, raw="CORRECT")
    request = server.requests[0]
    assert request["path"] == "/api/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = request["json"]
    assert body["model"] == "test/judge-model" and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    user = body["messages"][1]["content"]
    assert "Question: Who wrote Dune?" in user and "Reference answer: Frank Herbert" in user
    assert "Also accepted: Herbert" in user and "Candidate answer: Frank Herbert wrote it." in user
    # As a check_fn with an example as the ground truth.
    example = QAExample("q1", "Who wrote Dune?", "Frank Herbert")
    assert judge("Isaac Asimov", example) is False
    assert "Question: Who wrote Dune?" in server.requests[1]["json"]["messages"][1]["content"]
    assert judge.waits == []


def test_503_then_success_is_retried_honouring_retry_after(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(503, {"error": "busy"}, headers={"Retry-After": "2"}), Reply(body=completion("CORRECT")))
    judge = make_judge()
    assert judge("Paris", "Paris") is True
    assert len(server.requests) == 2 and judge.waits == [2.0]


def test_429_and_500_back_off_exponentially_then_succeed(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(429, {"error": "slow down"}), Reply(500, "oops"), Reply(body=completion("INCORRECT")))
    judge = make_judge(backoff=0.5)
    assert judge.judge(None, "Lyon", "Paris").correct is False
    assert judge.waits == [0.5, 1.0]


def test_retries_exhausted_is_a_clear_error(server: ScriptedServer, make_judge) -> None:
    server.play(*[Reply(502, "bad gateway")] * 3)
    judge = make_judge(max_retries=2)
    with pytest.raises(JudgeRetriesExhaustedError, match="failed 3 times; last failure: HTTP 502") as caught:
        judge("a", "b")
    assert caught.value.attempts == 3 and len(server.requests) == 3 and len(judge.waits) == 2


def test_timeout_is_retried_and_then_reported(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(body=completion("CORRECT"), delay=1.0), Reply(body=completion("CORRECT"), delay=1.0))
    judge = make_judge(timeout=0.2, max_retries=1)
    with pytest.raises(JudgeRetriesExhaustedError, match=r"no response within 0.2 s \(timeout\)"):
        judge("a", "b")
    assert len(judge.waits) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_fails_at_once_naming_the_variable(server: ScriptedServer, make_judge, status: int,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # A hostile server echoing the key back must not get it into the error.
    server.play(Reply(status, {"error": {"message": f"invalid key {SECRET}"}}))
    judge = make_judge()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(JudgeAuthError) as caught:
            judge("a", "b")
    message = str(caught.value)
    assert caught.value.status == status and KEY_ENV in message and f"HTTP {status}" in message
    assert SECRET not in message and SECRET not in repr(judge) and SECRET not in caplog.text
    assert len(server.requests) == 1 and judge.waits == []


def test_not_found_names_base_url_and_model(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(404, {"error": "no such model"}))
    judge = make_judge()
    with pytest.raises(JudgeNotFoundError, match="check base_url|Check base_url") as caught:
        judge("a", "b")
    assert "test/judge-model" in str(caught.value) and server.base_url in str(caught.value)


def test_other_client_errors_are_not_retried(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(400, {"error": "max_tokens too large"}))
    with pytest.raises(JudgeHTTPError, match="HTTP 400: .*max_tokens too large"):
        make_judge()("a", "b")
    assert len(server.requests) == 1


@pytest.mark.parametrize("body", ["<html>gateway</html>", {"choices": []}, {"choices": [{"message": {}}]}])
def test_malformed_body_is_a_response_error(server: ScriptedServer, make_judge, body: Any) -> None:
    server.play(*[Reply(200, body)] * 2)  # retried: a garbled reply is often a proxy's passing fault
    judge = make_judge(max_retries=1)
    with pytest.raises(JudgeResponseError, match="choices\\[0\\].message.content"):
        judge("a", "b")
    assert len(server.requests) == 2 and len(judge.waits) == 1


def test_off_script_verdict_is_rejected_not_guessed(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(body=completion("The candidate is CORRECT because...")))
    with pytest.raises(JudgeVerdictError) as caught:
        make_judge()("a", "b")
    assert caught.value.raw.startswith("The candidate is CORRECT")


def test_content_parts_are_joined(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(body={"choices": [{"message": {"content": [{"type": "text", "text": "CORR"},
                                                                 {"type": "text", "text": "ECT"}]}}]}))
    assert make_judge()("a", "b") is True


def test_parse_verdict_is_strict() -> None:
    assert parse_verdict("CORRECT") is True and parse_verdict(" correct.\n") is True
    assert parse_verdict("**INCORRECT**") is False
    for text in ("", "yes", "CORRECT!", "not CORRECT", "CORRECT INCORRECT", "Correctly"):
        assert parse_verdict(text) is None


def test_construction_errors_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(JudgeConfigError, match=f"environment variable {KEY_ENV}"):
        OpenRouterJudge(model="m", api_key_env=KEY_ENV)
    with pytest.raises(JudgeConfigError, match="base_url"):
        OpenRouterJudge(model="m", base_url="openrouter.ai", api_key_env=None)
    with pytest.raises(JudgeConfigError, match="max_retries"):
        OpenRouterJudge(model="m", api_key_env=None, max_retries=-1)
    monkeypatch.setenv(KEY_ENV, SECRET)
    judge = OpenRouterJudge(model="m", api_key_env=KEY_ENV)
    assert SECRET not in repr(judge) and SECRET not in str(vars(judge).get("api_key_env"))
    judge.close()


def test_server_without_keys(server: ScriptedServer) -> None:
    server.play(Reply(body=completion("CORRECT")))
    with OpenRouterJudge(model="local", base_url=server.base_url, api_key_env=None) as judge:
        assert judge("4", "4") is True
    assert "Authorization" not in server.requests[0]["headers"]


def test_retry_after_as_http_date_and_garbage(server: ScriptedServer, make_judge) -> None:
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server.play(Reply(429, "{}", headers={"Retry-After": soon}), Reply(503, "{}", headers={"Retry-After": "soon"}),
                Reply(body=completion("CORRECT")))
    judge = make_judge(backoff=0.25, max_backoff=20.0)
    assert judge("a", "a") is True
    assert judge.waits[0] == 20.0  # the server asked for ~30 s; max_backoff caps it
    assert judge.waits[1] == 0.5  # unreadable header: plain exponential backoff (0.25 * 2)


# ---------------------------------------------------------------- hostile servers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_server_cannot_hold_a_request_past_its_deadline(server: ScriptedServer, make_judge,
                                                                   drip_headers: bool) -> None:
    # One byte every 0.2 s keeps every per-read timeout happy, forever.
    server.play(Reply(drip=0.2, drip_headers=drip_headers))
    judge = make_judge(timeout=1.0, max_retries=0)
    with pytest.raises(JudgeRetriesExhaustedError, match=r"no response within 1 s \(timeout\)"):
        judge("a", "b")
    assert server.hung_up.wait(30), "the client never let go of the connection"
    assert server.dripped < 20  # about 1 s of bytes, not the endless stream


@pytest.mark.parametrize(
    "body, problem",
    [
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ('{"choices": [{"message": {"content": [{"text": 1}]}}]}', "content part's text is not a string"),
        ('{"choices": "x"}', "choices[0].message.content"),
        ("\x00\xff not json", "choices[0].message.content"),
    ],
    ids=["deep-json", "part-not-text", "choices-string", "binary"],
)
def test_a_malformed_reply_is_retried_then_typed(server: ScriptedServer, make_judge, body: str, problem: str) -> None:
    server.play(Reply(200, body), Reply(200, body))
    judge = make_judge(max_retries=1)
    with pytest.raises(JudgeResponseError) as caught:
        judge("a", "b")
    assert problem in str(caught.value)
    assert len(server.requests) == 2


def test_bad_compression_is_retried_then_typed(server: ScriptedServer, make_judge) -> None:
    garbage = Reply(200, b"\x1f\x8b not gzip at all", headers={"Content-Encoding": "gzip"})
    server.play(garbage, garbage, Reply(body=completion("CORRECT")))
    assert make_judge(max_retries=2)("a", "b") is True
    server.play(garbage)
    with pytest.raises(JudgeResponseError, match="bad compression"):
        make_judge(max_retries=0)("a", "b")


def test_the_key_is_scrubbed_before_a_401_body_is_cut(server: ScriptedServer, make_judge) -> None:
    server.play(Reply(401, "x" * 290 + SECRET + " was refused"))
    with pytest.raises(JudgeAuthError) as caught:
        make_judge()("a", "b")
    assert SECRET[:8] not in caught.value.detail  # not even the head of a cut key


def test_a_reply_echoing_the_headers_leaks_no_header_secret(server: ScriptedServer, make_judge) -> None:
    referer_token = "tok-extra-header-secret-42"
    server.play(Reply(echo_headers=True))
    judge = make_judge(extra_headers={"X-Org-Token": referer_token, "X-Title": "meta"})
    with pytest.raises(JudgeVerdictError) as caught:
        judge("a", "b")
    for text in _texts_of(caught.value):
        assert SECRET not in text and referer_token not in text
    assert "[redacted]" in caught.value.raw and "X-Title" in caught.value.raw
