"""``meta-agent serve``: an OpenAI-compatible chat endpoint over the agent.

:mod:`~meta_spider.agentcore.serve.protocol` reads and writes the OpenAI
chat-completions format, :mod:`~meta_spider.agentcore.serve.workers` runs
requests on a pool of agents, :mod:`~meta_spider.agentcore.serve.app` is the
FastAPI app. Importing this package needs the ``serve`` extra (FastAPI,
uvicorn, sse-starlette); ``import meta_spider.agentcore`` never imports it.
"""

from meta_spider.agentcore.serve.app import create_app, running_server, serve
from meta_spider.agentcore.serve.protocol import ChatRequest, ServedReply, ServeRequestError, parse_chat_request
from meta_spider.agentcore.serve.workers import AgentPool

__all__ = [
    "AgentPool",
    "ChatRequest",
    "ServeRequestError",
    "ServedReply",
    "create_app",
    "parse_chat_request",
    "running_server",
    "serve",
]
