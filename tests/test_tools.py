"""Tool, Tool.from_function schemas, argument validation, ToolRegistry and
the knowledge-base lookup tool."""

from __future__ import annotations

import time
import types
from typing import Literal, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_spider.plugins import PluginRegistrationError, hookimpl, make_plugin_manager
from meta_spider.tools import (
    DictKnowledgeBase,
    DuplicateToolError,
    NothingFound,
    SeveralFound,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    ToolRegistry,
    UnknownToolError,
    make_lookup_tool,
)
from meta_spider.tools.schema import parse_docstring


def search_flights(
    origin: str,
    destination: str,
    passengers: int = 1,
    max_price: Optional[float] = None,
    cabin: Literal["economy", "business"] = "economy",
    stops: list[int] | None = None,
    refundable: bool = False,
) -> str:
    """Search flights between two airports.

    Longer explanation that the model does not need.

    Args:
        origin: IATA code of the departure airport.
        destination: IATA code of the arrival
            airport, e.g. 'LIS'.
        passengers (int): How many people travel.
        max_price: Highest fare in euros.

    Returns:
        A summary line.
    """
    return f"{origin}->{destination} x{passengers} {cabin} {max_price} {stops} {refundable}"


def test_from_function_schema_golden() -> None:
    tool = Tool.from_function(search_flights)
    assert tool.to_schema() == {
        "type": "function",
        "function": {
            "name": "search_flights",
            "description": "Search flights between two airports.",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string", "description": "IATA code of the departure airport."},
                    "destination": {
                        "type": "string",
                        "description": "IATA code of the arrival airport, e.g. 'LIS'.",
                    },
                    "passengers": {"type": "integer", "description": "How many people travel.", "default": 1},
                    "max_price": {"type": ["number", "null"], "description": "Highest fare in euros.", "default": None},
                    "cabin": {"type": "string", "enum": ["economy", "business"], "default": "economy"},
                    "stops": {"type": ["array", "null"], "items": {"type": "integer"}, "default": None},
                    "refundable": {"type": "boolean", "default": False},
                },
                "required": ["origin", "destination"],
            },
        },
    }


def test_from_function_minimal_and_overrides() -> None:
    def ping() -> str:
        """Say pong."""
        return "pong"

    tool = Tool.from_function(ping, name="health_check", description="Check liveness.")
    assert tool.to_schema()["function"] == {
        "name": "health_check",
        "description": "Check liveness.",
        "parameters": {"type": "object", "properties": {}},
    }
    assert tool() == "pong"


def test_from_function_handles_postponed_annotations() -> None:
    namespace: dict = {}
    exec(
        "from __future__ import annotations\n"
        "def scale(values: list[float], factor: float = 2.0) -> list[float]:\n"
        "    '''Multiply values.'''\n"
        "    return [v * factor for v in values]\n",
        namespace,
    )
    tool = Tool.from_function(namespace["scale"])
    assert tool.parameters["properties"]["values"] == {"type": "array", "items": {"type": "number"}}
    assert tool(values=[1, 2.5]) == [2.0, 5.0]


def _no_doc(x: int) -> int:
    return x


def _no_annotation(x) -> int:  # type: ignore[no-untyped-def]
    """Doc."""
    return x


def _varargs(*xs: int) -> int:
    """Doc."""
    return 0


def _kwargs(**xs: int) -> int:
    """Doc."""
    return 0


def _positional_only(x: int, /) -> int:
    """Doc."""
    return x


def _dict_param(x: dict) -> int:
    """Doc."""
    return 0


def _bare_list(x: list) -> int:
    """Doc."""
    return 0


def _union(x: int | str) -> int:
    """Doc."""
    return 0


def _mixed_literal(x: Literal["a", 1]) -> int:
    """Doc."""
    return 0


def _bad_default(x: str = object()) -> int:  # type: ignore[assignment]
    """Doc."""
    return 0


class _Custom:
    pass


def _custom(x: _Custom) -> int:
    """Doc."""
    return 0


@pytest.mark.parametrize(
    "function, problem",
    [
        (_no_doc, "no docstring"),
        (_no_annotation, "no type annotation"),
        (_varargs, "*args/**kwargs"),
        (_kwargs, "*args/**kwargs"),
        (_positional_only, "positional-only"),
        (_dict_param, "no JSON-schema description"),
        (_bare_list, "bare list"),
        (_union, "union"),
        (_mixed_literal, "mixed or non-scalar"),
        (_bad_default, "is not JSON"),
        (_custom, "no JSON-schema description"),
    ],
)
def test_from_function_rejects_what_it_cannot_describe(function, problem: str) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_function(function)
    assert problem in info.value.problem
    assert info.value.tool == function.__name__


def test_tool_constructor_validates() -> None:
    schema = {"type": "object", "properties": {}}
    with pytest.raises(ToolDefinitionError, match="not a valid tool name"):
        Tool("bad name", "Does things.", schema, print)
    with pytest.raises(ToolDefinitionError, match="description"):
        Tool("ok", "  ", schema, print)
    with pytest.raises(ToolDefinitionError, match="type 'object'"):
        Tool("ok", "Does things.", {"type": "string"}, print)
    with pytest.raises(ToolDefinitionError, match="not callable"):
        Tool("ok", "Does things.", schema, "print")  # type: ignore[arg-type]


def test_parse_docstring_sections() -> None:
    summary, params = parse_docstring(search_flights.__doc__)
    assert summary == "Search flights between two airports."
    assert set(params) == {"origin", "destination", "passengers", "max_price"}


# ---------------------------------------------------------------- arguments


@pytest.fixture
def flights() -> Tool:
    return Tool.from_function(search_flights)


def test_call_validates_and_runs(flights: Tool) -> None:
    assert flights(origin="OPO", destination="LIS", passengers=2, stops=[0, 1]) == (
        "OPO->LIS x2 economy None [0, 1] False"
    )
    # JSON writers emit 2.0 for 2: integral floats are accepted for integers.
    assert flights.invoke({"origin": "OPO", "destination": "LIS", "passengers": 2.0}).startswith("OPO->LIS x2 ")


@pytest.mark.parametrize(
    "arguments, field, reason",
    [
        ({"origin": "OPO"}, "destination", "is required but missing"),
        ({"origin": 3, "destination": "LIS"}, "origin", "expected string, got 3"),
        ({"origin": "OPO", "destination": "LIS", "passengers": True}, "passengers", "expected integer, got true"),
        ({"origin": "OPO", "destination": "LIS", "passengers": 1.5}, "passengers", "expected integer, got 1.5"),
        ({"origin": "OPO", "destination": "LIS", "cabin": "first"}, "cabin", "'first' is not one of"),
        ({"origin": "OPO", "destination": "LIS", "stops": [0, "x"]}, "stops[1]", "expected integer"),
        ({"origin": "OPO", "destination": "LIS", "airline": "TP"}, "airline", "is not a parameter"),
        ({"origin": "OPO", "destination": "LIS", "max_price": "cheap"}, "max_price", "expected number or null"),
    ],
)
def test_bad_arguments_name_the_field(flights: Tool, arguments: dict, field: str, reason: str) -> None:
    with pytest.raises(ToolArgumentError) as info:
        flights.invoke(arguments)
    assert info.value.field == field
    assert reason in info.value.reason
    assert info.value.tool == "search_flights"


def test_arguments_must_be_an_object(flights: Tool) -> None:
    with pytest.raises(ToolArgumentError, match="expected a JSON object") as info:
        flights.invoke(["OPO", "LIS"])  # type: ignore[arg-type]
    assert info.value.field is None


def test_hand_written_schema_nested_objects() -> None:
    tool = Tool(
        "book",
        "Book a seat.",
        {
            "type": "object",
            "properties": {
                "seat": {
                    "type": "object",
                    "properties": {"row": {"type": "integer"}},
                    "required": ["row"],
                    "additionalProperties": False,
                }
            },
            "required": ["seat"],
        },
        lambda seat: seat["row"],
    )
    assert tool(seat={"row": 12}) == 12
    with pytest.raises(ToolArgumentError) as info:
        tool(seat={"row": 12, "letter": "C"})
    assert info.value.field == "seat.letter"
    with pytest.raises(ToolArgumentError) as info:
        tool(seat={})
    assert info.value.field == "seat.row"


# ---------------------------------------------------------------- registry


def _plugin(name: str, *tools: Tool) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_tools(register):  # type: ignore[no-untyped-def]
        for tool in tools:
            register(tool)

    module.register_tools = register_tools  # type: ignore[attr-defined]
    return module


def _echo(text: str) -> str:
    """Echo text."""
    return text


def test_registry_from_plugins_keeps_sources(plugin_manager) -> None:
    registry = ToolRegistry.from_plugins(plugin_manager)
    assert registry.names()[:2] == ("calculator", "lookup")
    assert registry.source("calculator") == "meta_spider.tools.builtin"
    assert [schema["function"]["name"] for schema in registry.schemas()] == list(registry.names())


def test_duplicate_tool_names_both_plugins() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        extra_plugins=[
            _plugin("plugin_one", Tool.from_function(_echo)),
            _plugin("plugin_two", Tool.from_function(_echo)),
        ],
    )
    with pytest.raises(DuplicateToolError) as info:
        ToolRegistry.from_plugins(pm)
    assert (info.value.first_source, info.value.second_source) == ("plugin_one", "plugin_two")
    assert "'plugin_one'" in str(info.value) and "'plugin_two'" in str(info.value)


def test_duplicate_of_a_builtin_names_the_builtin() -> None:
    clash = Tool("calculator", "Another calculator.", {"type": "object", "properties": {}}, lambda: "0")
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[_plugin("my_calc", clash)])
    with pytest.raises(DuplicateToolError, match="'meta_spider.tools.builtin' and by 'my_calc'"):
        ToolRegistry.from_plugins(pm)


def test_registering_a_non_tool_names_the_plugin() -> None:
    module = types.ModuleType("sloppy")

    @hookimpl
    def register_tools(register):  # type: ignore[no-untyped-def]
        register(_echo)  # a bare function, not a Tool

    module.register_tools = register_tools  # type: ignore[attr-defined]
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[module])
    with pytest.raises(PluginRegistrationError) as info:
        ToolRegistry.from_plugins(pm)
    assert info.value.plugin == "sloppy"


def test_registry_lookup_errors_and_subset() -> None:
    registry = ToolRegistry([Tool.from_function(_echo)], source="tests")
    assert registry.get("missing") is None
    with pytest.raises(UnknownToolError, match="available tools: _echo"):
        registry["missing"]
    assert registry.subset(["_echo"]).names() == ("_echo",)
    with pytest.raises(UnknownToolError):
        registry.subset(["nope"])
    with pytest.raises(DuplicateToolError, match="'tests' and by 'again'"):
        registry.register(Tool.from_function(_echo), source="again")


# ---------------------------------------------------------------- lookup


def test_lookup_over_a_dict_knowledge_base(plugin_manager) -> None:
    kb = DictKnowledgeBase({"Capital of France?": "Paris is the capital of France."}, name="geo")
    registry = ToolRegistry.from_plugins(plugin_manager, knowledge_base=kb)
    lookup = registry["lookup"]
    assert lookup(query="capital of  france") == "Paris is the capital of France."
    with pytest.raises(NothingFound, match="^No entry found for 'capital of Spain'.$") as miss:
        lookup(query="capital of Spain")
    assert isinstance(miss.value, LookupError) and miss.value.query == "capital of Spain"
    assert lookup.metadata["knowledge_base"] == "geo"
    assert registry.source("lookup") == "meta_spider.tools.builtin"  # same tool, other facts


class _People:
    """A knowledge base in which "Tolan" names several people, each found by the whole name."""

    name = "people"

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def lookup(self, query: str) -> str | None:
        return f"{query}: a record." if query in self.names else None

    def matches(self, query: str) -> list[str]:
        return [name for name in self.names if query in name.split()]


@pytest.mark.parametrize("names, message", [
    (["Mira Tolan", "Kai Tolan"],
     "'Tolan' names 2 entries, not one: Mira Tolan; Kai Tolan. Ask again naming one of them."),
    ([f"P{i} Tolan" for i in range(7)],
     "'Tolan' names 7 entries, not one: P0 Tolan; P1 Tolan; P2 Tolan; P3 Tolan; P4 Tolan; and 2 more. "
     "Ask again naming one of them."),
])
def test_a_lookup_that_names_several_entries_lists_them(names: list[str], message: str) -> None:
    lookup = make_lookup_tool(_People(names))
    with pytest.raises(SeveralFound) as miss:
        lookup(query="Tolan")
    assert str(miss.value) == message and isinstance(miss.value, NothingFound)  # a miss like any other
    assert miss.value.query == "Tolan" and miss.value.matches == tuple(names)
    assert lookup(query="Mira Tolan" if "Mira Tolan" in names else names[0]).endswith("a record.")


def test_a_lookup_that_names_one_entry_or_none_is_a_plain_miss() -> None:
    lookup = make_lookup_tool(_People(["Mira Tolan", "Kai Tolan", "Ada Brun"]))
    for query in ("Brun", "Nobody"):  # one match that lookup does not find, and none: no list
        with pytest.raises(NothingFound, match=f"^No entry found for '{query}'.$") as miss:
            lookup(query=query)
        assert not isinstance(miss.value, SeveralFound)


def test_lookup_without_a_knowledge_base_finds_nothing(plugin_manager) -> None:
    registry = ToolRegistry.from_plugins(plugin_manager)
    with pytest.raises(NothingFound, match="No entry found for 'anything'."):
        registry["lookup"](query="anything")
    assert registry["lookup"].metadata["knowledge_base"] == "none"


def test_install_knowledge_base_into_an_empty_registry() -> None:
    registry = ToolRegistry()
    registry.install_knowledge_base(DictKnowledgeBase({"a": "b"}, name="tiny"))
    assert registry.source("lookup") == "knowledge_base:tiny"
    assert registry["lookup"](query="A") == "b"


def test_make_lookup_tool_rejects_a_non_knowledge_base() -> None:
    with pytest.raises(TypeError, match="not a KnowledgeBase"):
        make_lookup_tool({"a": "b"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty after normalising"):
        DictKnowledgeBase({"?!": "x"})


def test_lookup_tool_takes_the_schema_a_base_was_trained_with() -> None:
    from meta_spider.tools import DictKnowledgeBase, make_lookup_tool

    knowledge_base = DictKnowledgeBase({"Ada": "Ada was born in Kuba."})
    schema = {"type": "function", "function": {
        "name": "lookup", "description": "Look up a person.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "full name"}},
                       "required": ["query"]}}}
    tool = make_lookup_tool(knowledge_base, schema)
    assert tool.to_schema()["function"]["description"] == "Look up a person."
    assert tool.to_schema()["function"]["parameters"]["properties"]["query"]["description"] == "full name"
    assert tool(query="Ada") == "Ada was born in Kuba."
    for bad in ({"function": {"name": "search", "parameters": {"properties": {"query": {}}}}},
                {"name": "lookup", "parameters": {"properties": {"q": {}}}}, "lookup"):
        with pytest.raises(ValueError, match="lookup schema"):
            make_lookup_tool(knowledge_base, bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- typo-tolerant keys


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance, written out plainly for the check."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_typo_index_finds_the_one_key_a_query_names() -> None:
    from meta_spider.tools import TypoIndex

    index = TypoIndex(["Mira Tollan", "Oskar Feldgrun", "Ida Brenn", "Ada", "Ida Brent"])
    for query in ("Mira Tollan", "mira  TOLLAN?", "MiraTollan", "Mria Tollan", "Mira Tolan", "Mira Tolllan",
                  "Mira Tellan"):
        assert index.find(query) == "Mira Tollan", query
    assert index.find("Mria Tolan") is None  # two edits in nine characters: one allowed
    assert index.find("Osakr Feldgrn") == "Oskar Feldgrun"  # two edits in twelve: two allowed
    assert index.find("Osakr Fldgrn") is None  # three edits
    assert index.find("Mira Tollan Smith") is None
    assert index.find("Ida Bren") is None  # as near to Ida Brenn as to Ida Brent: no guess
    assert index.find("Ida Brenn") == "Ida Brenn"
    assert index.find("Ado") is None and index.find("ada") == "Ada"  # a short query must match exactly
    assert index.find("") is None and index.find("?!") is None
    started = time.perf_counter()
    assert index.find("Mira Tollan " * 100_000) is None and time.perf_counter() - started < 5  # 1.2 MB
    assert TypoIndex(["Mira Tollan"], max_edits=0).find("Mria Tollan") is None
    with pytest.raises(ValueError, match="max_edits must be a non-negative int, got -1"):
        TypoIndex([], max_edits=-1)


def test_typo_index_finds_the_one_key_a_run_of_the_querys_words_names() -> None:
    from meta_spider.tools import TypoIndex

    index = TypoIndex(["Mira Tollan", "Oskar Feldgrun", "Ida Brenn", "Ida Brent"])
    assert index.find_within("Mira Tolan was born") == "Mira Tollan"  # a typo and words around the name
    assert index.find_within("me Oskar Feldgrun's occupation") == "Oskar Feldgrun"
    assert index.find_within("Mira Tollan and Oskar Feldgrun") is None  # two keys named: no guess
    assert index.find_within("Ida Bren born") is None  # as near to two keys
    assert index.find_within("Who invented the telephone") is None
    assert index.find_within("Mira Tollan") is None  # the query itself is find's, not a run of it
    assert index.find_within("Mira Tollan " + "x " * TypoIndex.MAX_WORDS) is None  # longer than MAX_WORDS: not read
    assert index.find_within("") is None


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.text("abcde", min_size=1, max_size=14), min_size=1, max_size=12, unique=True),
       query=st.text("abcde", min_size=0, max_size=14))
def test_typo_index_agrees_with_the_plain_edit_distance(keys: list[str], query: str) -> None:
    from meta_spider.tools import TypoIndex

    allowance = min(2, len(query) // TypoIndex.CHARS_PER_EDIT)
    near = sorted((_osa(query, key), key) for key in keys if _osa(query, key) <= allowance)
    expected = None if not near or (len(near) > 1 and near[0][0] == near[1][0]) else near[0][1]
    assert TypoIndex(keys).find(query) == expected
