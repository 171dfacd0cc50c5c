"""``meta-agent serve`` on loopback, driven by the official ``openai`` client.

A real uvicorn server answers on 127.0.0.1 (an ephemeral port) for three
agents: the tiny Qwen2 base taught to call ``lookup`` and to answer from its
result (from ``test_cli_run_doubter``) under the ``doubter`` policy on the
transformers backend; a Doubter exported to llama.cpp (the tiny base of
``test_llamacpp_backend`` with a perturbed Doubter and its sidecar) with two
workers, for the concurrency test; and the scripted ``fake`` backend through
the ``meta-agent serve`` command itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.rundir import RunSettings, read_run_settings
from meta_spider.agentcore.serve import AgentPool, create_app, running_server
from meta_spider.policies.actions import REFUSAL_SENTENCE
from meta_spider.tools import DictKnowledgeBase, make_lookup_tool

# The lookup the taught base learnt to call, as a client sends its definition.
LOOKUP_SCHEMA = make_lookup_tool(DictKnowledgeBase({})).to_schema()

KEY = "test-key"



def serve_pool(pm, run_settings: RunSettings, *, model_id: str, policy: str, backend: str, parallel: int = 1,
               server_tools: bool = False, api_key: str | None = KEY, tool_names: list[str] | None = None,
               context: str | None = None, direct_tools: list[str] | None = None):
    pool = AgentPool.build(lambda: AgentLauncher(pm, run_settings, max_steps=4, tool_names=tool_names,
                                                 context=context, direct_tools=direct_tools),
                           model_id=model_id, policy=policy, backend=backend, parallel=parallel,
                           server_tools=server_tools)
    return running_server(create_app(pool, api_key=api_key))


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def meta(reply) -> dict:  # type: ignore[no-untyped-def]
    return reply.model_extra["meta_spider"]


# ---- the taught base, doubter policy, transformers ------------------------------------


@pytest.fixture(scope="module")
def taught_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Run directories on the taught base with the Doubter's threshold at 1 (never confident)."""
    from test_cli_run_doubter import LAYERS, SMALL, TOOL_TEMPLATE, lessons, teach, write_run_dir
    from wrapper_helpers import make_tiny_model, make_tokenizer, save_tiny_model

    from meta_spider.backends.transformers import TransformersBackend

    tokenizer = make_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    # Room for the tool definitions the prompt builder adds to a template that ignores them.
    model = make_tiny_model("qwen2", tokenizer, max_position_embeddings=1024)
    assert teach(model, tokenizer, lessons(tokenizer)) < 0.01
    folder = save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("taught-qwen2"))
    backend = TransformersBackend.from_settings(str(folder), local_files_only=True, target_layers=LAYERS)
    checkpoint = backend.pipeline.new_doubter(**SMALL).save_checkpoint(tmp_path_factory.mktemp("ckpt") / "doubter")
    return write_run_dir(tmp_path_factory.mktemp("run"), (folder, checkpoint), threshold=1.0)


@pytest.fixture(scope="module")
def taught_server(taught_run: Path):  # type: ignore[no-untyped-def]
    from meta_spider.plugins import make_plugin_manager

    with serve_pool(make_plugin_manager(), read_run_settings(taught_run), model_id="taught", policy="doubter",
                    backend="transformers") as url:
        yield url


def test_a_tool_call_goes_to_the_client_and_its_result_gets_the_answer(taught_server: str) -> None:
    api = client(taught_server)
    question = {"role": "user", "content": "What is the capital of Veloria?"}
    first = api.chat.completions.create(model="taught", messages=[question], tools=[LOOKUP_SCHEMA])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"query": "Veloria"}
    info = meta(first)
    assert info["decision"] == "lookup" and info["policy"] == "doubter"
    assert 0.0 < info["p_correct"] < 1.0
    assert (info["threshold"], info["threshold_source"]) == (1.0, "calibration:doubter")

    # The client runs its tool and sends the result back: the model answers from it.
    follow_up = [question, choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Veloria: capital Amberhold."}]
    second = api.chat.completions.create(model="taught", messages=follow_up, tools=[LOOKUP_SCHEMA])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Amberhold"
    assert meta(second)["decision"] == "answer" and second.usage.completion_tokens > 0

    # Streamed, the same answer arrives in chunks; the last chunk carries the extension object.
    chunks = list(api.chat.completions.create(model="taught", messages=follow_up, tools=[LOOKUP_SCHEMA], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Amberhold"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert meta(chunks[-1])["decision"] == "answer" and meta(chunks[-1])["policy"] == "doubter"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_without_tools_an_uncertain_doubter_refuses(taught_server: str) -> None:
    api = client(taught_server)
    reply = api.chat.completions.create(model="taught", messages=[{"role": "user", "content": "What is the capital of "
                                                                   "Veloria?"}], max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == REFUSAL_SENTENCE and reply.choices[0].finish_reason == "stop"
    assert not reply.choices[0].message.tool_calls
    info = meta(reply)
    assert info["decision"] == "refuse" and info["p_correct"] < info["threshold"]
    # A streamed tool call comes as one tool_calls delta and the tool_calls finish.
    chunks = list(api.chat.completions.create(model="taught", messages=[{"role": "user", "content": "What is the "
                  "capital of Veloria?"}], tools=[LOOKUP_SCHEMA], stream=True))
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [call.function.name for call in calls] == ["lookup"] and chunks[-1].choices[0].finish_reason == "tool_calls"
    assert meta(chunks[-1])["decision"] == "lookup"


def test_server_tools_run_the_lookup_inside_the_agent_loop(taught_run: Path) -> None:
    from meta_spider.plugins import make_plugin_manager

    with serve_pool(make_plugin_manager(), read_run_settings(taught_run), model_id="taught", policy="doubter",
                    backend="transformers", server_tools=True, tool_names=["lookup"]) as url:
        reply = client(url).chat.completions.create(
            model="taught", messages=[{"role": "user", "content": "What is the capital of Veloria?"}])
    assert reply.choices[0].message.content == "Amberhold" and not reply.choices[0].message.tool_calls
    assert (meta(reply)["decision"], meta(reply)["outcome"]) == ("lookup", "answer")


def test_server_tools_give_a_direct_tools_result_as_the_reply(taught_run: Path) -> None:
    from meta_spider.plugins import make_plugin_manager

    with serve_pool(make_plugin_manager(), read_run_settings(taught_run), model_id="taught", policy="doubter",
                    backend="transformers", server_tools=True, tool_names=["lookup"],
                    direct_tools=["lookup"]) as url:
        reply = client(url).chat.completions.create(
            model="taught", messages=[{"role": "user", "content": "What is the capital of Veloria?"}])
    # The lookup's own text, not the model's "Amberhold" after reading it.
    assert reply.choices[0].message.content == "Veloria: capital Amberhold."
    assert (meta(reply)["decision"], meta(reply)["outcome"]) == ("lookup", "answer")


def test_question_context_answers_the_last_question_as_if_asked_alone(taught_run: Path) -> None:
    """``--context question``: the Doubter and the model read the client's
    last question (with the system prompt), not the turns before it."""
    from meta_spider.plugins import make_plugin_manager

    question = {"role": "user", "content": "What is the capital of Veloria?"}
    earlier = [{"role": "user", "content": "Hello there."}, {"role": "assistant", "content": "Hello."}]
    replies = {}
    for context in ("question", "all"):
        with serve_pool(make_plugin_manager(), read_run_settings(taught_run), model_id="taught", policy="doubter",
                        backend="transformers", context=context) as url:
            api = client(url)
            replies[context] = [api.chat.completions.create(model="taught", messages=messages, tools=[LOOKUP_SCHEMA])
                                for messages in ([question], [*earlier, question])]
    alone, in_chat = replies["question"]
    assert meta(in_chat)["p_correct"] == meta(alone)["p_correct"]
    assert in_chat.choices[0].message.tool_calls[0].function.arguments == '{"query": "Veloria"}'
    alone_all, in_chat_all = replies["all"]
    assert meta(alone_all)["p_correct"] == meta(alone)["p_correct"]
    assert meta(in_chat_all)["p_correct"] != meta(alone)["p_correct"]  # the default reads the earlier turns


def test_bad_requests_get_4xx_json_and_the_server_keeps_answering(taught_server: str) -> None:
    api = client(taught_server)
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{taught_server}/v1/chat/completions"
    cases = [
        (b'{"model": "taught", "messages": [', 400, "not valid JSON"),
        (b'[1, 2]', 400, "JSON object"),
        (json.dumps({"model": "taught"}).encode(), 400, "'messages'"),
        (json.dumps({"model": "taught", "messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, "wizard"),
        (json.dumps({"model": "taught", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}).encode(),
         400, "max_tokens"),
        (json.dumps({"model": "taught", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
         400, "text parts"),
        (json.dumps({"model": "taught", "messages": [{"role": "tool", "tool_call_id": "abc",
                                                      "content": "x"}]}).encode(), 400, "no earlier assistant message"),
        (json.dumps({"model": "taught", "messages": [{"role": "user", "content": "Veloria " * 400}]}).encode(),
         400, "context"),
    ]
    for body, status, words in cases:
        response = httpx.post(url, content=body, headers=headers, timeout=60)
        assert response.status_code == status, (body[:60], response.text)
        error = response.json()["error"]
        assert words in error["message"] and error["type"] == "invalid_request_error", error
    too_long = httpx.post(url, json={"model": "taught", "messages": [{"role": "user", "content": "Veloria " * 400}]},
                          headers=headers, timeout=60).json()["error"]
    assert too_long["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError, match="API key is wrong"):
        client(taught_server, key="wrong").chat.completions.create(model="taught", messages=[{"role": "user",
                                                                                               "content": "hi"}])
    missing = httpx.get(f"{taught_server}/v1/models", timeout=30)
    assert missing.status_code == 401 and "no API key" in missing.json()["error"]["message"]
    assert httpx.get(f"{taught_server}/v1/nowhere", headers=headers, timeout=30).status_code == 404
    assert [model.id for model in api.models.list()] == ["taught"]
    assert httpx.get(f"{taught_server}/health", timeout=30).json()["status"] == "ok"
    assert api.chat.completions.create(model="taught", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4).choices[0].message.content == REFUSAL_SENTENCE


def test_messages_the_template_refuses_are_a_400(plugin_manager, shared_dir: Path) -> None:
    # Mistral's template insists that user and assistant turns alternate.
    template = (shared_dir / "templates" / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text()
    settings = RunSettings(backends={"fake": {"chat_template": template}})
    with serve_pool(plugin_manager, settings, model_id="fake", policy="direct", backend="fake") as url:
        with pytest.raises(openai.BadRequestError, match="chat template refuses") as raised:
            client(url).chat.completions.create(model="fake", messages=[{"role": "user", "content": "a"},
                                                                        {"role": "user", "content": "b"}])
    assert raised.value.status_code == 400


# ---- llama.cpp, two workers: concurrency --------------------------------------------


@pytest.fixture(scope="module")
def llamacpp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run exported for llama.cpp (base GGUFs + Doubter sidecar) from a tiny base and a perturbed Doubter."""
    from test_deploy_sidecar import make_run_dir
    from test_llamacpp_backend import Tiny

    from meta_spider.loom.gguf.deploy import export_from_run_dir

    root = tmp_path_factory.mktemp("served-llamacpp")
    tiny = Tiny(root)
    base_folder = root / "tiny-qwen2"
    tiny.model.save_pretrained(base_folder)
    tiny.tokenizer.save_pretrained(base_folder)
    run_dir = make_run_dir(root / "run", str(base_folder), tiny.pipeline().doubter,
                           policy={"name": "doubter", "settings": {"threshold": 0.5}})
    export_from_run_dir(run_dir)
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["backends"]["llamacpp"].update(n_threads=1, n_ctx=256)
    (run_dir / "run.json").write_text(json.dumps(manifest))
    return run_dir


def test_sixteen_clients_get_the_answers_each_request_gets_alone(plugin_manager, llamacpp_run: Path) -> None:
    questions = [f"Where was person {index} born, and what do they do?" for index in range(16)]

    def ask(api: openai.OpenAI, question: str) -> tuple:  # type: ignore[type-arg]
        reply = api.chat.completions.create(model="run", messages=[{"role": "user", "content": question}],
                                            max_tokens=6)
        info = meta(reply)
        return reply.choices[0].message.content, reply.choices[0].finish_reason, info["decision"], info["p_correct"]

    with serve_pool(plugin_manager, read_run_settings(llamacpp_run), model_id="run", policy="doubter",
                    backend="llamacpp", parallel=2) as url:
        alone = {question: ask(client(url), question) for question in questions}
        decisions = {answer[2] for answer in alone.values()}
        assert decisions == {"answer", "refuse"}, alone  # both paths run concurrently below
        results: list[tuple[str, tuple]] = []  # type: ignore[type-arg]
        errors: list[BaseException] = []

        def one_client(offset: int) -> None:
            api = client(url)
            try:
                for turn in range(8):
                    question = questions[(offset + 3 * turn) % len(questions)]
                    results.append((question, ask(api, question)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one_client, args=(offset,)) for offset in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        health = httpx.get(f"{url}/health", timeout=30).json()
    assert not errors, errors[:3]
    assert len(results) == 16 * 8
    for question, answer in results:
        assert answer == alone[question], question
    assert health["workers"] == 2 and health["busy"] == 0


# ---- the command ---------------------------------------------------------------------


def test_the_serve_command_answers_over_http(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Paris.", "Rome."]))
    command = Path(sys.executable).parent / "meta-agent"
    process = subprocess.Popen([str(command), "serve", "--port", "0", "--api-key", KEY, "--script", str(script),
                                "--model-name", "scripted"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = process.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        base = line.strip().rsplit(" ", 1)[-1]
        api = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                models = api.models.list()
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        assert [model.id for model in models] == ["scripted"]
        reply = api.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "Capital?"}])
        assert reply.choices[0].message.content == "Paris." and meta(reply)["policy"] == "direct"
        assert meta(reply)["p_correct"] is None and meta(reply)["decision"] == "answer"
    finally:
        process.terminate()
        process.wait(timeout=30)
