"""The terminal chat REPL: :class:`ChatLoop` (``meta-agent chat``).

Input is read with prompt_toolkit: a history file (under the user data dir
by default), multi-line input (end a line with ``\\`` or press Esc then
Enter for a new line; Enter sends) and completion of slash commands, policy
and backend names (Tab; the menu opens by itself after ``/``). Each question
runs through the agent loop; the model's text streams as it is generated,
then the turn's trace is rendered (policy, P(correct) gauge, tool calls with
arguments and results, the final action). Text a step streamed that the
agent then sets aside (the policy was unsure, so it refuses or calls a
tool instead) is marked as such right after it, trace or not.

Ctrl-C during a turn stops the generation (the backend's loop unwinds), marks
the turn ``interrupted`` and rolls the session back to before the question,
so earlier turns stay and the next question works. Ctrl-C at the prompt
clears the line; Ctrl-D or ``/exit`` leaves. Sessions save and load as JSON
through :class:`~meta_spider.agentcore.session.Session`.

Input and output are injectable (a prompt_toolkit pipe input and
``DummyOutput``, a rich ``Console`` recording to a ``StringIO``) so the loop
is tested in-process. This module knows nothing about models: it gets an
:class:`~meta_spider.agentcore.launch.AgentLauncher`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import get_app
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output
from rich.console import Console
from rich.table import Table
from rich.text import Text

from meta_spider.agentcore.errors import AgentError
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.render import set_aside_note, step_renderable
from meta_spider.agentcore.session import Session
from meta_spider.agentcore.steps import FinalStep, ModelStep
from meta_spider.agentcore.stream_display import ParsedStreamingBackend
from meta_spider.agentcore.streaming import GenerationInterrupted
from meta_spider.native.streaming import StreamEvent
from meta_spider.plugins import MetaSpiderError
from meta_spider.tools.limits import safe_str

__all__ = ["COMMANDS", "HISTORY_ENV_VAR", "ChatLoop", "SlashCompleter", "Turn", "default_history_path"]

HISTORY_ENV_VAR = "META_SPIDER_CHAT_HISTORY"
"""Overrides the history file's location."""

COMMANDS: dict[str, str] = {
    "/help": "this list",
    "/tools": "the tools the agent may call",
    "/policy": "NAME: switch the decision policy (no name: show the choices)",
    "/backend": "NAME: switch the inference backend (no name: show the choices)",
    "/trace": "on|off: show or hide each turn's trace",
    "/reset": "start a new session",
    "/save": "FILE: save the session as JSON",
    "/load": "FILE: load a saved session",
    "/exit": "leave (Ctrl-D too)",
}
TURNS_KEY = "chat_turns"
"""Session metadata key holding the REPL's turn summaries."""


def default_history_path() -> Path:
    """``$META_SPIDER_CHAT_HISTORY``, else ``<user data dir>/meta-spider/chat_history``."""
    override = os.environ.get(HISTORY_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("meta-spider", appauthor=False)) / "chat_history"


@dataclass
class Turn:
    """One question and what became of it."""

    question: str
    outcome: str
    """``answer``, ``refuse``, ``max_steps``, ``interrupted`` or ``error``."""
    text: str | None
    policy: str
    backend: str
    tool_calls: int = 0
    model_steps: int = 0


class SlashCompleter(Completer):
    """Completes slash commands and their arguments (policy and backend names
    are asked for at each completion, so newly registered ones show up)."""

    def __init__(self, policy_names: Callable[[], Iterable[str]], backend_names: Callable[[], Iterable[str]]) -> None:
        self.policy_names = policy_names
        self.backend_names = backend_names
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        command, space, argument = text.partition(" ")
        if not space:
            for name, meta in COMMANDS.items():
                if name.startswith(command):
                    yield Completion(name, start_position=-len(command), display_meta=meta)
            return
        choices: Iterable[str] = ()
        if command == "/policy":
            choices = self.policy_names()
        elif command == "/backend":
            choices = self.backend_names()
        elif command == "/trace":
            choices = ("on", "off")
        elif command in ("/save", "/load"):
            yield from self._paths.get_completions(Document(argument, len(argument)), complete_event)
            return
        for choice in choices:
            if choice.startswith(argument):
                yield Completion(choice, start_position=-len(argument))


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter")
    def _send_or_continue(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        # A trailing backslash continues the question on a new line (the
        # shell's convention); anything else sends it.
        if buffer.document.is_cursor_at_the_end and buffer.text.endswith("\\"):
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @bindings.add("escape", "enter")
    def _new_line(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


class ChatLoop:
    """The REPL around one agent and one session."""

    def __init__(
        self,
        launcher: AgentLauncher,
        *,
        policy: str | None = None,
        backend: str | None = None,
        console: Console | None = None,
        input: Input | None = None,
        output: Output | None = None,
        history: History | str | os.PathLike[str] | None = None,
        show_trace: bool = True,
    ) -> None:
        """``history``: a prompt_toolkit History, a file path, or None for
        :func:`default_history_path`. ``input``/``output`` default to the terminal."""
        self.launcher = launcher
        # No automatic highlighting: model text and paths print as they are.
        self.console = console or Console(highlight=False)
        self.show_trace = show_trace
        self.backend_name = backend or launcher.default_backend
        self.policy_name = policy or launcher.policy_for(self.backend_name)
        agent = launcher.build_agent(policy=self.policy_name, backend=self.backend_name)
        # The model's text is shown parsed: answer and reasoning, no call markup.
        self.stream = ParsedStreamingBackend(
            agent.backend, self._on_event, family=lambda: getattr(self.agent.renderer, "family", None)
        )
        agent.backend = self.stream
        self.agent = agent
        self.session = Session()
        self.turns: list[Turn] = []
        self._streamed = False
        self.prompt_session: PromptSession[str] = PromptSession(
            history=self._history(history),
            completer=SlashCompleter(launcher.policy_names, launcher.backend_names),
            complete_while_typing=Condition(lambda: get_app().current_buffer.text.startswith("/")),
            key_bindings=_key_bindings(),
            multiline=True,
            prompt_continuation=lambda width, line_number, wrap_count: "." * (width - 1) + " ",
            input=input,
            output=output,
        )

    @staticmethod
    def _history(history: History | str | os.PathLike[str] | None) -> History:
        if isinstance(history, History):
            return history
        path = Path(history) if history is not None else default_history_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home must not stop the chat: keep history in memory
            return InMemoryHistory()
        return FileHistory(str(path))

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Read and answer until ``/exit`` or Ctrl-D; returns the exit status (0)."""
        self.console.print(
            Text.assemble(("meta-spider chat", "bold"), f"  policy {self.policy_name}  backend {self.backend_name}  ",
                          ("(/help for commands, Ctrl-D to leave)", "dim"))
        )
        if self.agent.context == "question":
            self.console.print(Text("This run's base was trained on one question per chat: it reads only the "
                                    "current question. The session keeps every turn; start with --context all to "
                                    "show the model the whole conversation.", style="dim"))
        if self.agent.direct_tools:
            self.console.print(Text(f"The result of {', '.join(self.agent.direct_tools)} is the answer: the model "
                                    "does not restate it. Start with --direct-tools '' to have it restate "
                                    "every result.", style="dim"))
        if self.agent.ground_arguments:
            self.console.print(Text("A call's argument that nearly copies the question's words is replaced by "
                                    "those words (the trace shows what the model wrote); --no-ground-arguments "
                                    "runs calls as written.", style="dim"))
        while True:
            try:
                line = self.prompt_session.prompt(f"{self.policy_name}> ")
                text = line.strip()
                if text.startswith("/"):
                    if not self.command(text):
                        return 0
                elif text:
                    self.ask(text)
            except KeyboardInterrupt:
                # At the prompt it clears the line; between a turn and the
                # next prompt (or in a command) it must not leave either.
                self.console.print(Text("(Ctrl-D or /exit to leave)", style="dim"))
            except EOFError:
                return 0

    def interrupt(self) -> None:
        """Stop the running generation (thread-safe); Ctrl-C does the same."""
        self.stream.interrupt()

    def _on_event(self, event: StreamEvent) -> None:
        if event.kind not in ("content", "reasoning"):
            return  # calls and failed calls: the trace prints them parsed
        self._streamed = True
        style = "dim" if event.kind == "content" else "dim italic"
        self.console.print(Text(event.text, style=style), end="", soft_wrap=True)
        self.console.file.flush()  # a terminal is line-buffered: show the text now, not at the newline

    def _end_stream(self) -> None:
        if self._streamed:
            self.console.print()
            self._streamed = False

    def ask(self, question: str) -> Turn:
        """Run one question through the agent, rendering as it goes."""
        session = self.session
        if not session.messages and self.agent.system_prompt:
            session.add_message("system", self.agent.system_prompt)
        snapshot = (len(session.messages), len(session.tool_results), session.call_counter)
        turn = Turn(question, "error", None, self.policy_name, self.backend_name)
        self.stream.clear_interrupt()
        session.add_user(question)
        steps = self.agent.run(session)
        finished = False
        try:
            for step in steps:
                streamed = self._streamed
                self._end_stream()
                if isinstance(step, ModelStep):
                    turn.model_steps = step.index
                    note = set_aside_note(step) if streamed else None
                    if note is not None:
                        self.console.print(Text(f"({note})", style="dim italic"))
                elif isinstance(step, FinalStep):
                    turn.outcome, turn.text, finished = step.outcome, step.text, True
                else:
                    turn.tool_calls += 1
                if self.show_trace or isinstance(step, FinalStep):
                    self.console.print(step_renderable(step))
        except (KeyboardInterrupt, GenerationInterrupted):
            steps.close()
            self._end_stream()
            if not finished:  # after the final step only the trace's printing was cut
                self._roll_back(snapshot)
                turn.outcome = "interrupted"
                self.console.print("[bold yellow]interrupted[/bold yellow] [dim](the session is as before "
                                   "this question)[/dim]")
        except Exception as exc:  # noqa: BLE001 - a REPL reports a failed turn and goes on
            steps.close()
            self._end_stream()
            if not finished:
                self._roll_back(snapshot)
            kind = "" if isinstance(exc, MetaSpiderError) else f"{type(exc).__name__}: "
            self.console.print(Text(f"error: {kind}{safe_str(exc)}", style="bold red"))
        self.turns.append(turn)
        session.metadata[TURNS_KEY] = [asdict(entry) for entry in self.turns]
        return turn

    def _roll_back(self, snapshot: tuple[int, int, int]) -> None:
        messages, results, counter = snapshot
        del self.session.messages[messages:]
        del self.session.tool_results[results:]
        self.session.call_counter = counter

    # ------------------------------------------------------------ commands

    def command(self, line: str) -> bool:
        """Run one slash command; False means leave."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.console.print(Text(f"cannot read the command: {exc}", style="red"))
            return True
        name, arguments = words[0], words[1:]
        if name in ("/exit", "/quit"):
            return False
        handler = {
            "/help": self._help,
            "/tools": self._tools,
            "/policy": self._policy,
            "/backend": self._backend,
            "/trace": self._trace,
            "/reset": self._reset,
            "/save": self._save,
            "/load": self._load,
        }.get(name)
        if handler is None:
            self.console.print(Text(f"unknown command {name}; /help lists them", style="red"))
            return True
        try:
            handler(arguments)
        except Exception as exc:  # noqa: BLE001 - a REPL reports a failed command and goes on
            self.console.print(Text(f"{name} failed: {type(exc).__name__}: {safe_str(exc)}", style="bold red"))
        return True

    def _help(self, arguments: list[str]) -> None:
        table = Table(show_header=False, box=None)
        for name, meta in COMMANDS.items():
            table.add_row(Text(name, style="bold"), meta)
        self.console.print(table)
        self.console.print("[dim]Enter sends; end a line with \\ or press Esc then Enter for a new line; "
                           "Tab completes; Ctrl-C stops a generation.[/dim]")

    def _tools(self, arguments: list[str]) -> None:
        table = Table(title=f"{len(self.agent.tools.names())} tools")
        table.add_column("tool", no_wrap=True, style="bold")
        table.add_column("description", overflow="fold")
        table.add_column("result is the answer", no_wrap=True)
        for name in self.agent.tools.names():
            tool = self.agent.tools.get(name)
            table.add_row(name, tool.description if tool else "", "yes" if name in self.agent.direct_tools else "")
        self.console.print(table)

    def _switch(self, kind: str, arguments: list[str], current: str, names: Iterable[str],
                install: Callable[[str], None]) -> str | None:
        """``/policy`` and ``/backend``: with no name, show the current one and
        the choices; else ``install`` the named one and return its name. A name
        that cannot be installed leaves the old one in place."""
        if len(arguments) != 1:
            self.console.print(Text.assemble(f"{kind}: ", (current, "bold"), f"; available: {', '.join(names)}"))
            return None
        name = arguments[0]
        try:
            install(name)
        except Exception as exc:  # noqa: BLE001 - unknown name, bad settings, a backend that cannot load: say so
            self.console.print(Text(f"cannot switch to {kind} {name!r}: {exc}", style="red"))
            return None
        self.console.print(Text.assemble(f"{kind}: ", (name, "bold")))
        return name

    def _policy(self, arguments: list[str]) -> None:
        def install(name: str) -> None:
            self.agent.policy = self.launcher.make_policy(name)

        self.policy_name = self._switch("policy", arguments, self.policy_name, self.launcher.policy_names(),
                                        install) or self.policy_name

    def _backend(self, arguments: list[str]) -> None:
        def install(name: str) -> None:
            self.stream.inner = self.launcher.make_backend(name)

        self.backend_name = self._switch("backend", arguments, self.backend_name, self.launcher.backend_names(),
                                         install) or self.backend_name

    def _trace(self, arguments: list[str]) -> None:
        if arguments not in (["on"], ["off"]):
            self.console.print(f"trace is {'on' if self.show_trace else 'off'}; use /trace on|off")
            return
        self.show_trace = arguments[0] == "on"
        self.console.print(f"trace: [bold]{arguments[0]}[/bold]")

    def _reset(self, arguments: list[str]) -> None:
        self.session = Session()
        self.turns = []
        self.console.print("new session")

    def _save(self, arguments: list[str]) -> None:
        if len(arguments) != 1:
            self.console.print("[red]usage: /save FILE[/red]")
            return
        self.session.metadata.update({"policy": self.policy_name, "backend": self.backend_name})
        try:
            path = self.session.save(Path(arguments[0]).expanduser())
        except AgentError as exc:
            self.console.print(Text(str(exc), style="red"))
            return
        # Text, not markup: a path may hold "[/]" or "[bold]".
        self.console.print(Text(f"saved {len(self.session.messages)} messages to {path}"))

    def _load(self, arguments: list[str]) -> None:
        if len(arguments) != 1:
            self.console.print("[red]usage: /load FILE[/red]")
            return
        try:
            session = Session.load(Path(arguments[0]).expanduser())
        except AgentError as exc:  # the file is named and checked: say what is wrong, keep this session
            self.console.print(Text(f"{exc}; the current session is kept", style="red"))
            return
        self.session = session
        self.turns = _turns(session.metadata.get(TURNS_KEY, []))
        self.console.print(
            Text(f"loaded {len(session.messages)} messages ({len(self.turns)} turns) from {arguments[0]}")
        )
        last = next((m for m in reversed(session.messages) if m.get("role") == "assistant" and m.get("content")), None)
        if last is not None:
            self.console.print(Text(f"last answer: {last['content']}", style="dim"))


def _turns(entries: Any) -> list[Turn]:
    # Turn summaries are informative only: a session saved by another tool
    # (or an older REPL) loads with the ones that still read.
    turns: list[Turn] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            turns.append(Turn(**entry))
        except TypeError:
            continue
    return turns
