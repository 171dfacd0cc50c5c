"""The agents behind the server: a pool of workers, each with its own backend.

Every worker is an agent built by :class:`~meta_spider.agentcore.launch.AgentLauncher`
(through :func:`~meta_spider.agentcore.factory.build_agent`), the same way
``meta-agent run`` and ``chat`` build theirs, with its own
backend (a llama.cpp context or a transformers pipeline holds per-request
state: the pass-1 KV cache, the last read). A request borrows one idle worker
for its whole run, so requests never share a backend's state; ``parallel``
workers answer that many requests at once and the rest wait their turn.

One request is one model step of the agent (the policy decides, the renderer
makes the action), or, with ``server_tools`` and no tools from the client, a
whole agent run with the server's own tools. Tools the client sends are only
offered to the model: a tool call goes back to the client, never executed here.
This module knows nothing about HTTP.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from meta_spider.agentcore.factory import rebuild_agent
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.loop import MetaAgent
from meta_spider.agentcore.serve.protocol import ChatRequest, ServedReply, ServeRequestError
from meta_spider.agentcore.session import Session
from meta_spider.agentcore.steps import FinalStep, ModelStep
from meta_spider.backends.base import Completion, InferenceBackend, Introspection, WrappedBackend
from meta_spider.policies.actions import Action, Answer, Refuse, ToolCall
from meta_spider.policies.base import LatentDecision

__all__ = ["AgentPool", "ClientTools", "RequestBackend"]


class ClientTools:
    """The client's tool definitions as the policies and the renderer read a tool set."""

    def __init__(self, schemas: Sequence[Mapping[str, Any]]) -> None:
        self._schemas = [dict(schema) for schema in schemas]
        self._names = {schema["function"]["name"] for schema in self._schemas}

    def schemas(self) -> list[dict[str, Any]]:
        return [dict(schema) for schema in self._schemas]

    def __contains__(self, name: object) -> bool:
        return name in self._names


def _context_limit(backend: Any) -> int | None:
    """The most prompt tokens the backend's model takes, when it says."""
    context = getattr(backend, "context", None)  # llama.cpp: the context window it was opened with
    if context is not None and isinstance(getattr(context, "n_ctx", None), int):
        return int(context.n_ctx)
    pipeline = getattr(backend, "pipeline", None)  # transformers: the model's position limit
    limit = getattr(getattr(getattr(pipeline, "model", None), "config", None), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def count_tokens(backend: Any, text: str) -> int | None:
    """Tokens of already rendered ``text`` with the backend's own tokenizer (None when it has none)."""
    encode = getattr(backend, "encode", None)
    if callable(encode):
        return len(encode(text))
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return None


class RequestBackend(WrappedBackend):
    """One request's view of a worker's backend: its ``max_tokens`` and ``stop``, the context
    check, and the token counts for ``usage``."""

    def __init__(self, inner: InferenceBackend, *, max_tokens: int | None, stop: Sequence[str]) -> None:
        super().__init__(inner)
        self.max_tokens = max_tokens
        self.stop = tuple(stop)
        self.limit = _context_limit(inner)
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def _check(self, prompt: str) -> None:
        count = count_tokens(self.inner, prompt)
        if count is None:
            return
        self.prompt_tokens = max(self.prompt_tokens, count)
        # A prompt that fills the context leaves no room for a single new token.
        if self.limit is not None and count >= self.limit:
            raise ServeRequestError(
                400, f"the prompt is {count} tokens; this model's context holds {self.limit}, with room for at least "
                "one new token. Shorten the messages.", param="messages", code="context_length_exceeded")

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        self._check(prompt)
        return self.inner.read(prompt, question=question)

    def generate(self, prompt: str, *, max_new_tokens: int = 256, stop: Sequence[str] = (),
                 inject: Introspection | None = None, on_text: Callable[[str], None] | None = None) -> Completion:
        self._check(prompt)
        if self.max_tokens is not None:
            max_new_tokens = min(max_new_tokens, self.max_tokens)
        completion = self.inner.generate(prompt, max_new_tokens=max_new_tokens, stop=(*stop, *self.stop),
                                         inject=inject, on_text=on_text)
        self.completion_tokens += completion.num_tokens
        return completion


def _openai_calls(action: ToolCall) -> list[dict[str, Any]]:
    session = Session()  # settles call ids the way the agent's own sessions do
    return [{"id": call.call_id, "type": "function",
             "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}
            for call in session.add_tool_calls(action.calls)]


def _decision_name(action: Action | None) -> str | None:
    if isinstance(action, Answer):
        return "answer"
    if isinstance(action, Refuse):
        return "refuse"
    if isinstance(action, ToolCall):
        return "lookup"
    return None


@dataclass
class _Worker:
    agent: MetaAgent
    policy: str
    backend: str


class AgentPool:
    """``parallel`` agents; :meth:`answer` runs one request on an idle one."""

    def __init__(self, workers: Sequence[_Worker], *, model_id: str, server_tools: bool = False) -> None:
        if not workers:
            raise ValueError("an agent pool needs at least one worker")
        self.model_id = model_id
        self.server_tools = server_tools
        self.size = len(workers)
        self.policy = workers[0].policy
        self.backend = workers[0].backend
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in workers:
            self._idle.put(worker)
        self._busy = 0
        self._lock = threading.Lock()

    @classmethod
    def build(cls, make_launcher: Callable[[], AgentLauncher], *, model_id: str, policy: str | None = None,
              backend: str | None = None, parallel: int = 1, server_tools: bool = False) -> "AgentPool":
        """Build ``parallel`` agents, each from its own launcher (so each loads its own backend)."""
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel must be a positive int, got {parallel!r}")
        workers = []
        for _ in range(parallel):
            launcher = make_launcher()
            backend_name = backend or launcher.default_backend
            policy_name = policy or launcher.policy_for(backend_name)
            workers.append(_Worker(launcher.build_agent(policy=policy_name, backend=backend_name),
                                   policy_name, backend_name))
        return cls(workers, model_id=model_id, server_tools=server_tools)

    @property
    def busy(self) -> int:
        return self._busy

    def answer(self, request: ChatRequest) -> ServedReply:
        """Run ``request`` on an idle worker (waiting for one); blocking."""
        worker = self._idle.get()
        with self._lock:
            self._busy += 1
        try:
            return self._answer(worker, request)
        finally:
            with self._lock:
                self._busy -= 1
            self._idle.put(worker)

    def _answer(self, worker: _Worker, request: ChatRequest) -> ServedReply:
        backend = RequestBackend(worker.agent.backend, max_tokens=request.max_tokens, stop=request.stop)
        messages = [dict(message) for message in request.messages]
        system_prompt = worker.agent.system_prompt
        if system_prompt and not any(message["role"] == "system" for message in messages):
            # The run's Doubter was trained and calibrated on prompts with the run's system prompt.
            messages.insert(0, {"role": "system", "content": system_prompt})
        session = Session(messages=messages)
        # The worker's agent, every setting kept, with this request's view of its backend.
        agent = rebuild_agent(worker.agent, backend=backend)
        if self.server_tools and not request.tools:
            first, action, outcome = self._run_loop(agent, session)
        else:
            tools = ClientTools(request.tools)
            view = agent.view(session)
            decision = agent.policy.decide(view, backend, tools)
            action = agent.renderer.render(decision, view, backend, tools)
            first, outcome = (decision, action), _decision_name(action)
        return self._reply(worker, first, action, outcome, backend)

    def _run_loop(self, agent: MetaAgent, session: Session) -> tuple[tuple[LatentDecision, Action], Action | None, str]:
        first: tuple[LatentDecision, Action] | None = None
        final: FinalStep | None = None
        for step in agent.run(session):
            if isinstance(step, ModelStep) and first is None:
                first = (step.decision, step.action)
            elif isinstance(step, FinalStep):
                final = step
        assert first is not None and final is not None  # a run has a model step and ends with a final step
        return first, final.action, final.outcome

    def _reply(self, worker: _Worker, first: tuple[LatentDecision, Action], action: Action | None,
               outcome: str | None, backend: RequestBackend) -> ServedReply:
        decision, first_action = first
        threshold = decision.metadata.get("threshold")
        meta = {
            "p_correct": decision.p_correct,
            "decision": _decision_name(first_action),
            "threshold": threshold if isinstance(threshold, (int, float)) and threshold != float("inf") else None,
            "threshold_source": decision.metadata.get("threshold_source"),
            "policy": worker.policy,
            "backend": worker.backend,
            "outcome": outcome,
        }
        if isinstance(action, ToolCall) and action.calls:
            content = action.content or None
            return ServedReply("tool_calls", content, _openai_calls(action), "tool_calls", meta,
                               backend.prompt_tokens, backend.completion_tokens)
        if isinstance(action, ToolCall):  # the model tried to call a tool and no attempt could be read
            text = "\n".join(failure.raw for failure in action.failures) or decision.text
            return ServedReply("answer", text, [], "stop", meta, backend.prompt_tokens, backend.completion_tokens)
        if action is None:  # the server's tool loop ran out of steps
            return ServedReply("max_steps", None, [], "length", meta, backend.prompt_tokens,
                               backend.completion_tokens)
        finish = "length" if isinstance(action, Answer) and decision.metadata.get("finish_reason") == "length" \
            and outcome == "answer" and first_action is action else "stop"
        kind = "refuse" if isinstance(action, Refuse) else "answer"
        return ServedReply(kind, action.text, [], finish, meta, backend.prompt_tokens, backend.completion_tokens)
