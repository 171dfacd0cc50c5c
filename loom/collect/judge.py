"""An LLM judge of free-form answers over any OpenAI-compatible
``/chat/completions`` endpoint (OpenRouter by default).

:class:`OpenRouterJudge` asks the judge model whether a candidate answer
agrees with the reference and reads a strict one-word verdict, ``CORRECT``
or ``INCORRECT``; anything else is a :class:`JudgeVerdictError`, never a
guess. Called as ``judge(prediction, ground_truth)`` it is a ``check_fn``
for the collector.

Transport rules: ``timeout`` is a total deadline per attempt (connect,
write and every read together: a server dripping bytes cannot hold a
request). 429, 5xx, timeouts, connection failures and malformed 200 replies
(bad JSON, bad compression, wrong shapes) are retried a bounded number of
times with exponential backoff (a ``Retry-After`` header sets the wait);
401/403 (key refused), 404 (base URL or model wrong) and other 4xx fail at
once with a typed error. The API key is read from an environment variable;
it and every extra header's value are scrubbed from any text a server sent
before that text is cut or stored, so they never appear in a log line, an
exception, a repr or a ``raw`` field. This module knows nothing about datasets or models beyond the question
and answer texts it is handed.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import httpx

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "JUDGE_SYSTEM_PROMPT",
    "JudgeAuthError",
    "JudgeConfigError",
    "JudgeError",
    "JudgeHTTPError",
    "JudgeNotFoundError",
    "JudgeResponseError",
    "JudgeRetriesExhaustedError",
    "JudgeVerdict",
    "JudgeVerdictError",
    "OpenRouterJudge",
    "judge_messages",
    "parse_verdict",
]

logger = logging.getLogger(__name__)

JUDGE_SYSTEM_PROMPT = (
    "You grade answers to questions. Compare the candidate answer with the reference answer. "
    "The candidate is correct when it states the same fact as the reference (or one of the accepted "
    "alternatives), even if worded differently; it is incorrect when it states something else, hedges "
    "between options, refuses, or adds a contradicting claim. Reply with exactly one word: CORRECT or INCORRECT."
)

_RETRY_STATUSES = frozenset({408, 425, 429})
_BODY_SNIPPET = 300
_MAX_BODY_BYTES = 4 * 1024 * 1024
"""A chat completion of a one-word verdict is a few hundred bytes."""
_MIN_SECRET_LENGTH = 8
"""Extra header values at least this long are scrubbed from server text;
shorter ones cannot be secrets and would mangle it."""


class JudgeError(MetaSpiderError):
    """Base class of judge errors."""


class JudgeConfigError(JudgeError, ValueError):
    """The judge cannot be built as configured (e.g. the key variable is unset)."""


class JudgeHTTPError(JudgeError, fields=("status", "url", "detail", "fix")):
    """The endpoint answered with an HTTP error that retrying will not fix."""

    template = "judge request to {url} failed with HTTP {status}: {detail}. {fix}"


class JudgeAuthError(JudgeHTTPError):
    """401/403: the endpoint refused the key."""


class JudgeNotFoundError(JudgeHTTPError):
    """404: the base URL or the model name is wrong."""


class JudgeRetriesExhaustedError(JudgeError, fields=("url", "attempts", "last_failure")):
    """Every attempt hit a retryable failure (429, 5xx, timeout, connection)."""

    template = (
        "judge request to {url} failed {attempts} times; last failure: {last_failure}. "
        "The endpoint is overloaded or unreachable: retry later, raise max_retries/timeout, or check base_url."
    )


class JudgeResponseError(JudgeError, fields=("url", "problem", "body")):
    """The endpoint answered 200 with a body that is not a chat completion."""

    def describe(self) -> str:
        return (f"judge response from {self.url} is malformed: {self.problem}; "
                f"body starts {self.body[:_BODY_SNIPPET]!r}")


class JudgeVerdictError(JudgeError, fields=("model", "raw")):
    """The judge model replied with something other than CORRECT / INCORRECT."""

    template = ("judge model {model!r} replied {snippet!r}, not CORRECT or INCORRECT; "
                "use a model that follows the one-word instruction (or a stronger one)")

    def __post_init__(self) -> None:
        self.snippet = self.raw[:_BODY_SNIPPET]


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's decision and the text it came from."""

    correct: bool
    raw: str


def parse_verdict(text: str) -> Optional[bool]:
    """True for ``CORRECT``, False for ``INCORRECT`` (case-insensitive,
    surrounding whitespace, quotes, asterisks and a final period allowed);
    None for anything else."""
    word = text.strip().strip("*\"'`").rstrip(".").strip().upper()
    return {"CORRECT": True, "INCORRECT": False}.get(word)


def judge_messages(question: Optional[str], prediction: str, reference: Union[str, Sequence[str]]) -> list[dict[str, str]]:
    """The chat messages sent to the judge model."""
    accepted = [reference] if isinstance(reference, str) else list(reference)
    lines = []
    if question:
        lines.append(f"Question: {question}")
    lines.append(f"Reference answer: {accepted[0]}")
    if len(accepted) > 1:
        lines.append("Also accepted: " + "; ".join(accepted[1:]))
    lines.append(f"Candidate answer: {prediction}")
    lines.append("Is the candidate answer correct? Reply CORRECT or INCORRECT.")
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def _retry_after_seconds(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # The other form the header may take: an HTTP date.
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class OpenRouterJudge(contextlib.AbstractContextManager):
    """Judge free-form answers with a model behind an OpenAI-compatible API.

    ``api_key_env`` names the environment variable holding the key (None
    for a local server that needs none); it is read once, here. ``timeout``
    is seconds per request; ``max_retries`` extra attempts after the first;
    the wait before retry ``k`` is ``backoff * 2**k`` seconds, or the
    server's ``Retry-After``, capped at ``max_backoff``. ``sleep`` is how to
    wait (tests pass a recorder).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://openrouter.ai/api/v1",
        api_key_env: Optional[str] = "OPENROUTER_API_KEY",
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_tokens: int = 16,
        extra_headers: Optional[Mapping[str, str]] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise JudgeConfigError(f"model must name the judge model, got {model!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise JudgeConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not timeout > 0:
            raise JudgeConfigError(f"timeout must be positive seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise JudgeConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if backoff < 0 or max_backoff < 0:
            raise JudgeConfigError(f"backoff and max_backoff must be >= 0, got {backoff!r} and {max_backoff!r}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_tokens = max_tokens
        self._sleep = sleep
        headers = {"Content-Type": "application/json", **dict(extra_headers or {})}
        # Names only: the values stay in the client.
        self._secret_headers = tuple({name.lower() for name in extra_headers or {}} | {"authorization"})
        if api_key_env is not None:
            key = os.environ.get(api_key_env, "").strip()
            if not key:
                raise JudgeConfigError(
                    f"the judge needs an API key in the environment variable {api_key_env}; "
                    f"set it (export {api_key_env}=...) or pass api_key_env=None for a server without keys"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=self.timeout)

    @property
    def url(self) -> str:
        """The chat-completions URL requests go to."""
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"OpenRouterJudge(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ judging

    def judge(self, question: Optional[str], prediction: str, reference: Union[str, Sequence[str]]) -> JudgeVerdict:
        """Ask the judge model whether ``prediction`` answers ``question`` as
        ``reference`` (a string, or the accepted answers) does."""
        payload = {
            "model": self.model,
            "messages": judge_messages(question, prediction, reference),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        raw = self._scrub(self._complete(payload))
        verdict = parse_verdict(raw)
        if verdict is None:
            raise JudgeVerdictError(self.model, raw)
        return JudgeVerdict(correct=verdict, raw=raw)

    def __call__(self, prediction: str, ground_truth: Any) -> bool:
        """``check_fn(prediction, ground_truth)``: ``ground_truth`` is a
        reference string, a sequence of accepted strings, or an example with
        ``question``, ``answer`` and ``aliases`` (a :class:`QAExample`)."""
        question = None
        if hasattr(ground_truth, "question") and hasattr(ground_truth, "answer"):
            question = ground_truth.question
            reference: Union[str, Sequence[str]] = (ground_truth.answer, *getattr(ground_truth, "aliases", ()))
        else:
            reference = ground_truth
        return self.judge(question, prediction, reference).correct

    # ------------------------------------------------------------ transport

    def _complete(self, payload: dict[str, Any]) -> str:
        attempts = self.max_retries + 1
        last_failure = ""
        for attempt in range(attempts):
            retry_after: Optional[float] = None
            malformed: Optional[JudgeResponseError] = None
            try:
                status, reason, retry_header, body = self._post(payload)
            except (_DeadlineExceeded, httpx.TimeoutException):
                last_failure = f"no response within {self.timeout:g} s (timeout)"
            except httpx.DecodingError:
                malformed = JudgeResponseError(self.url, "the body cannot be decoded (bad compression)", "")
            except JudgeResponseError as error:
                malformed = error
            except httpx.HTTPError as error:
                last_failure = f"connection failed ({type(error).__name__})"
            else:
                if status == 200:
                    try:
                        return self._content(body)
                    except JudgeResponseError as error:
                        malformed = error
                elif status in _RETRY_STATUSES or status >= 500:
                    last_failure = f"HTTP {status}"
                    retry_after = _retry_after_seconds(retry_header)
                else:
                    raise self._http_error(status, reason, body)
            if malformed is not None:
                if attempt + 1 == attempts:  # the last word: say exactly what was wrong
                    raise malformed
                last_failure = f"malformed response ({malformed.problem})"
            if attempt + 1 < attempts:
                delay = retry_after if retry_after is not None else self.backoff * 2**attempt
                delay = min(delay, self.max_backoff)
                logger.info("judge: %s from %s; retry %d/%d in %.2f s", last_failure, self.url, attempt + 1,
                            self.max_retries, delay)
                self._sleep(delay)
        raise JudgeRetriesExhaustedError(self.url, attempts, last_failure)

    def _post(self, payload: dict[str, Any]) -> tuple[int, str, Optional[str], bytes]:
        """One attempt under the total deadline: (status, reason, Retry-After, body)."""
        deadline = time.monotonic() + self.timeout
        client = self._client
        outcome: dict[str, Any] = {}

        def exchange() -> None:
            try:
                outcome["reply"] = self._exchange(client, payload, deadline)
            except BaseException as error:  # noqa: BLE001 - carried back to the caller's thread
                outcome["error"] = error

        # httpx's timeouts are per read: a server sending a byte now and then
        # never trips them. The worker checks the deadline between chunks; a
        # read that keeps receiving header bytes is stopped by closing its client.
        worker = threading.Thread(target=exchange, name="judge-request", daemon=True)
        worker.start()
        worker.join(self.timeout + 0.1)
        if worker.is_alive():
            self._client = httpx.Client(headers=client.headers, timeout=self.timeout)
            client.close()
            raise _DeadlineExceeded()
        error = outcome.get("error")
        if error is not None:
            raise error
        return outcome["reply"]

    def _exchange(self, client: httpx.Client, payload: dict[str, Any],
                  deadline: float) -> tuple[int, str, Optional[str], bytes]:
        with client.stream("POST", self.url, json=payload) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > _MAX_BODY_BYTES:
                    raise JudgeResponseError(self.url, f"the body is larger than {_MAX_BODY_BYTES} bytes", "")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded()
            return response.status_code, response.reason_phrase, response.headers.get("Retry-After"), b"".join(chunks)

    def _http_error(self, status: int, reason: str, body: bytes) -> JudgeHTTPError:
        # Scrub first, then cut: a cut key would no longer match.
        detail = self._scrub(body.decode("utf-8", "replace")).strip()[:_BODY_SNIPPET] or reason
        if status in (401, 403):
            variable = self.api_key_env or "the API key variable"
            return JudgeAuthError(status, self.url, detail,
                                  f"The key was refused: set {variable} to a valid key for {self.base_url}")
        if status == 404:
            return JudgeNotFoundError(status, self.url, detail,
                                      f"Check base_url ({self.base_url!r}, which must end before /chat/completions) "
                                      f"and the model name ({self.model!r})")
        return JudgeHTTPError(status, self.url, detail, "The request was rejected; check the model name and options")

    def _scrub(self, text: str) -> str:
        # A server may echo the request's headers back; never let the key or
        # another header's secret travel into an exception, a log or a field.
        for secret in self._secrets():
            text = text.replace(secret, "[redacted]")
        return text

    def _secrets(self) -> list[str]:
        secrets = []
        for name in self._secret_headers:
            value = self._client.headers.get(name, "")
            if name == "authorization" and value.startswith("Bearer "):
                secrets.append(value[len("Bearer "):])
            if len(value) >= _MIN_SECRET_LENGTH:
                secrets.append(value)
        # The longest first: a whole header value before the key inside it.
        return sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def _content(self, body: bytes) -> str:
        text = self._scrub(body.decode("utf-8", "replace"))
        try:
            document = json.loads(text)
            content = document["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeResponseError(self.url, "expected JSON with choices[0].message.content", text) from None
        except RecursionError:
            raise JudgeResponseError(self.url, "the JSON nests too deeply", text[:_BODY_SNIPPET]) from None
        if isinstance(content, list):  # some providers return content parts
            texts = [part.get("text", "") for part in content if isinstance(part, dict)]
            if not all(isinstance(piece, str) for piece in texts):
                raise JudgeResponseError(self.url, "a content part's text is not a string", text)
            content = "".join(texts)
        if not isinstance(content, str):
            raise JudgeResponseError(self.url, f"message content is {type(content).__name__}, not text", text)
        return content


class _DeadlineExceeded(Exception):
    """An attempt ran past its total deadline (internal: becomes a retried timeout)."""
