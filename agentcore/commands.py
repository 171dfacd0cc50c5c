"""The built-in ``agent`` command group (``meta-agent``): ``tools``,
``plugins``, ``run``, ``chat`` and ``serve``.

A plugin module in :data:`~meta_spider.plugins.DEFAULT_PLUGINS`; it registers
its group through ``register_commands`` like any third party. ``tools`` and
``plugins`` list what the loaded plugins registered; ``run`` answers one
question, ``chat`` opens the REPL and ``serve`` answers over HTTP
(:mod:`meta_spider.agentcore.serve`), all three with the policy and backend named
by the options or by the run directory's ``run.json`` (see
:mod:`meta_spider.agentcore.rundir`); without a run directory the ``fake``
backend plays a script (``--script FILE``, see
:mod:`meta_spider.agentcore.script`) or the built-in demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from meta_spider.agentcore.cli import plugin_manager
from meta_spider.native import ToolCallFamily
from meta_spider.plugins import MetaSpiderError, hookimpl, plugin_distributions
from meta_spider.tools import ToolError, ToolRegistry


@click.group("agent", help="The agent: ask it, chat with it, list its tools and plugins.")
def agent_group() -> None:
    pass


@agent_group.command("tools")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def tools_command(ctx: click.Context, as_json: bool) -> None:
    """List every registered tool with the plugin that gave it."""
    pm = plugin_manager(ctx)
    try:
        registry = ToolRegistry.from_plugins(pm)
    except ToolError as exc:  # e.g. two plugins registered one tool name
        raise click.ClickException(str(exc)) from exc
    distributions = plugin_distributions(pm)
    rows = [
        {
            "name": entry.tool.name,
            "plugin": entry.source,
            "distribution": distributions.get(entry.source, "?"),
            "description": entry.tool.description,
        }
        for entry in registry.entries()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} tools")
    # Tool names stay whole (users type them); the rest wraps to fit.
    table.add_column("tool", no_wrap=True)
    table.add_column("plugin", overflow="fold", ratio=1)
    table.add_column("distribution", overflow="fold", ratio=1)
    table.add_column("description", overflow="fold", ratio=2)
    for row in rows:
        table.add_row(row["name"], row["plugin"], row["distribution"], row["description"])
    Console().print(table)


@agent_group.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins, their distributions and the hooks they implement."""
    pm = plugin_manager(ctx)
    distributions = plugin_distributions(pm)
    rows = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        rows.append({"plugin": name, "distribution": distributions.get(name, "?"), "hooks": hooks})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} plugins")
    table.add_column("plugin", overflow="fold", ratio=1)
    table.add_column("distribution", overflow="fold", ratio=1)
    table.add_column("hooks", overflow="fold", ratio=2)
    for row in rows:
        table.add_row(row["plugin"], row["distribution"], ", ".join(row["hooks"]))
    Console().print(table)


_TOOL_FAMILY_OPTION = click.option(
    "--tool-family", default=None, type=click.Choice([family.value for family in ToolCallFamily], case_sensitive=False),
    help="The tool-call syntax the model writes (default: run.json's renderer setting, else detected from the "
         "chat template).")
_DIRECT_TOOLS_OPTION = click.option(
    "--direct-tools", "direct_tools", default=None, metavar="NAME[,NAME...]",
    help="Tools whose result is the answer: a turn that calls only these ends with their results, the model "
         "does not restate them (default: the tools the run's dataset trained its base to state, as the embedded "
         "world's calculator, else none; --direct-tools '' for none).")
_GROUND_OPTION = click.option(
    "--ground-arguments/--no-ground-arguments", "ground_arguments", default=None,
    help="Replace a call's argument that nearly copies a run of the question's words with those words, and run "
         "the tools the run's dataset names only with the question's words (the world's lookup: a name the model "
         "made up finds no one). Default: what the run's dataset says, on for the embedded world, else off.")
_CONTEXT_OPTION = click.option(
    "--context", default=None, type=click.Choice(["all", "question"]),
    help="What the model reads of the conversation: all of it, or only the current question with its tool calls "
         "(default: question when the run's dataset trained its base on one question per chat, as the embedded "
         "world's, else all).")


def _agent_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``run`` and ``chat`` share."""
    options = [
        click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="A run directory; its run.json names the policy and the backends' settings."),
        click.option("--policy", default=None, help="Policy name (default: run.json's, else 'doubter' when the run "
                     "has a trained Doubter, else 'direct')."),
        click.option("--backend", default=None,
                     help="Backend name (default: the first in run.json, else 'fake')."),
        click.option("--script", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
                     help="JSON script of outputs for the 'fake' backend (default: the built-in demo)."),
        click.option("--max-steps", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Most model steps per question."),
        click.option("--tools", "tool_names", default=None, metavar="NAME[,NAME...]",
                     help="Offer only these tools (default: the tools the run's dataset trained its base with, "
                          "else every registered one), e.g. --tools lookup."),
        _TOOL_FAMILY_OPTION,
        _CONTEXT_OPTION,
        _DIRECT_TOOLS_OPTION,
        _GROUND_OPTION,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _names(option: str | None) -> list[str] | None:
    """A comma-separated option as names (None when it was not given)."""
    return None if option is None else [name.strip() for name in option.split(",") if name.strip()]


def _launcher(ctx: click.Context, run_dir: Path | None, script: Path | None, max_steps: int,
              tool_names: str | None = None, tool_family: str | None = None, context: str | None = None,
              direct_tools: str | None = None, ground_arguments: bool | None = None) -> Any:
    # Imported here: `meta-agent tools` should not pay for the REPL's imports.
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import RunSettings, read_run_settings
    from meta_spider.agentcore.script import load_script

    try:
        settings = read_run_settings(run_dir) if run_dir is not None else RunSettings()
        return AgentLauncher(plugin_manager(ctx), settings, load_script(script) if script else None,
                             max_steps=max_steps, tool_names=_names(tool_names), tool_family=tool_family,
                             context=context, direct_tools=_names(direct_tools), ground_arguments=ground_arguments)
    except MetaSpiderError as exc:
        raise click.ClickException(str(exc)) from exc


@agent_group.command("run")
@click.argument("question")
@_agent_options
@click.option("--json", "as_json", is_flag=True, help="Print the step records as JSON instead of the trace.")
@click.pass_context
def run_command(ctx: click.Context, question: str, run_dir: Path | None, policy: str | None,
                backend: str | None, script: Path | None, max_steps: int, tool_names: str | None,
                tool_family: str | None, context: str | None, direct_tools: str | None,
                ground_arguments: bool | None, as_json: bool) -> None:
    """Answer QUESTION once and show how: the policy's decision (with
    P(correct) when it has one), tool calls with arguments and results, and
    the final action."""
    from rich.text import Text

    from meta_spider.agentcore.render import set_aside_note, step_renderable
    from meta_spider.agentcore.steps import FinalStep, ModelStep
    from meta_spider.agentcore.stream_display import ParsedStreamingBackend

    if not question.strip():
        raise click.BadParameter("the question is empty: ask something, e.g. meta-agent run \"What is 17*23?\"",
                                 param_hint="QUESTION")
    launcher = _launcher(ctx, run_dir, script, max_steps, tool_names, tool_family, context, direct_tools,
                         ground_arguments)
    console = Console()
    try:
        agent = launcher.build_agent(policy=policy, backend=backend)
        streamed: list[str] = []

        def show(event: Any) -> None:
            if event.kind not in ("content", "reasoning"):
                return  # calls: the trace prints them parsed
            streamed.append(event.text)
            console.print(event.text, style="dim", end="", soft_wrap=True, markup=False, highlight=False)
            console.file.flush()

        if not as_json:  # stream the model's answer as it comes (no call markup), then the trace
            agent.backend = ParsedStreamingBackend(
                agent.backend, show, family=lambda: getattr(agent.renderer, "family", None))
        records = []
        final: FinalStep | None = None
        for step in agent.run(question):
            records.append(step.to_dict())
            if as_json:
                final = step if isinstance(step, FinalStep) else final
                continue
            if streamed:
                console.print()
                note = set_aside_note(step) if isinstance(step, ModelStep) else None
                if note is not None:  # the streamed text is not what the agent does with it: say so, as chat does
                    console.print(Text(f"({note})", style="dim italic"))
                streamed.clear()
            console.print(step_renderable(step))
            final = step if isinstance(step, FinalStep) else final
    except MetaSpiderError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({
            "question": question,
            "policy": policy or launcher.policy_for(backend),
            "backend": backend or launcher.default_backend,
            "outcome": final.outcome if final else None,
            "text": final.text if final else None,
            "steps": records,
        }, indent=2, ensure_ascii=False))


@agent_group.command("chat")
@_agent_options
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="History file (default: $META_SPIDER_CHAT_HISTORY, else the user data dir).")
@click.option("--no-trace", is_flag=True, help="Start with the trace hidden (/trace on shows it).")
@click.pass_context
def chat_command(ctx: click.Context, run_dir: Path | None, policy: str | None, backend: str | None,
                 script: Path | None, max_steps: int, tool_names: str | None, tool_family: str | None,
                 context: str | None, direct_tools: str | None, ground_arguments: bool | None,
                 history: Path | None, no_trace: bool) -> None:
    """Chat with the agent in the terminal. Enter sends; end a line with a
    backslash (or press Esc then Enter) for a new line; Tab completes slash
    commands; Ctrl-C stops a generation; Ctrl-D or /exit leaves."""
    from meta_spider.agentcore.chat import ChatLoop

    launcher = _launcher(ctx, run_dir, script, max_steps, tool_names, tool_family, context, direct_tools,
                         ground_arguments)
    try:
        loop = ChatLoop(launcher, policy=policy, backend=backend, history=history, show_trace=not no_trace)
    except MetaSpiderError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(loop.run())


@agent_group.command("serve")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A run directory; its run.json names the policy, the backends' settings and the calibration.")
@click.option("--policy", default=None, help="Policy name, e.g. doubter or direct (default: run.json's, else "
              "'doubter' when the run has a trained Doubter, else 'direct').")
@click.option("--backend", default=None, help="Backend name, e.g. llamacpp or transformers (default: the first in "
              "run.json, else 'fake').")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the line printed at start says which).")
@click.option("--api-key", default=None, envvar="META_SPIDER_API_KEY",
              help="Require 'Authorization: Bearer KEY' on every /v1 route (also $META_SPIDER_API_KEY).")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers: requests answered at once, each worker with its own backend (its own model copy).")
@click.option("--server-tools", is_flag=True,
              help="When a request sends no tools, run the server's own tools (the lookup) inside the agent loop.")
@click.option("--tools", "tool_names", default=None, metavar="NAME[,NAME...]",
              help="With --server-tools: offer only these tools (default: the tools the run's dataset "
                   "trained its base with, else every registered one).")
@click.option("--max-steps", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most model steps per request with --server-tools.")
@_TOOL_FAMILY_OPTION
@_CONTEXT_OPTION
@_DIRECT_TOOLS_OPTION
@_GROUND_OPTION
@click.option("--model-name", default=None, help="The model id clients send (default: the run directory's name).")
@click.option("--script", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="JSON script of outputs for the 'fake' backend (default: the built-in demo).")
@click.pass_context
def serve_command(ctx: click.Context, run_dir: Path | None, policy: str | None, backend: str | None, host: str,
                  port: int, api_key: str | None, parallel: int, server_tools: bool, tool_names: str | None,
                  max_steps: int, tool_family: str | None, context: str | None, direct_tools: str | None,
                  ground_arguments: bool | None, model_name: str | None, script: Path | None) -> None:
    """Serve the agent over the OpenAI chat API: POST /v1/chat/completions,
    GET /v1/models, GET /health. Every reply carries a 'meta_spider' object
    with P(correct), the decision (answer, lookup or refuse) and the threshold."""
    try:
        from meta_spider.agentcore.serve import AgentPool, create_app, serve
    except ImportError as exc:
        raise click.ClickException(f"meta-agent serve needs the 'serve' extra ({exc}): "
                                   "pip install 'meta-spider[serve]'") from exc
    from meta_spider.agentcore.errors import AgentError
    from meta_spider.backends import BackendError
    from meta_spider.plugins import PluginError

    name = model_name or (run_dir.resolve().name if run_dir is not None else "meta-spider-demo")
    try:
        pool = AgentPool.build(lambda: _launcher(ctx, run_dir, script, max_steps, tool_names, tool_family, context,
                                                 direct_tools, ground_arguments),
                               model_id=name,
                               policy=policy, backend=backend, parallel=parallel, server_tools=server_tools)
    except (AgentError, BackendError, PluginError) as exc:
        raise click.ClickException(str(exc)) from exc

    def ready(url: str) -> None:
        click.echo(f"meta-agent serve: model {name!r}, policy {pool.policy}, backend {pool.backend}, "
                   f"{pool.size} worker(s); listening on {url}/v1", err=True)

    try:
        serve(create_app(pool, api_key=api_key), host, port, on_ready=ready)
    except OSError as exc:  # the address is taken or not ours
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc


@hookimpl
def register_commands(register: Callable[[click.Group], None]) -> None:
    """Register the ``agent`` group."""
    register(agent_group)
