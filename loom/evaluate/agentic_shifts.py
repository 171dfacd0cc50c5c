"""The agent comparison on several splits, side by side.

``metaloom eval --shifts --agentic`` runs :func:`~meta_spider.loom.evaluate.agentic.run_agentic_eval`
on ``test`` and on every shift split (new wording, misspelt names,
questions outside the world) with the same run, policies and tools.
:func:`agent_shift_rows` reads each split's
:class:`~meta_spider.loom.evaluate.agentic.AgentComparisonReport` into one
row per split and policy: right answers, refusals, wrong answers (on a split
without true answers, the invented ones) and tool calls per question;
:func:`agent_shift_table` shows them as one rich table, and the rows are
what ``agentic_shifts.json`` holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from meta_spider.loom.evaluate.shifts import SHIFT_PREFIX

if TYPE_CHECKING:
    from rich.table import Table

    from meta_spider.loom.evaluate.agentic import AgentComparisonReport

__all__ = ["agent_shift_rows", "agent_shift_table"]


def agent_shift_rows(reports: Mapping[str, "AgentComparisonReport"]) -> list[dict[str, Any]]:
    """One row per split (in ``reports``' order) and policy (in the report's
    order): ``split``, ``policy``, ``n``, ``right``, ``refused``,
    ``wrong`` (answers the check rejects), ``max_steps`` (runs that ran out
    of steps), ``pass_rate`` and ``tool_calls_per_task``."""
    rows = []
    for split, report in reports.items():
        for policy in report.policies:
            results = report.results[policy]
            metrics = report.metrics(policy)
            rows.append({
                "split": split, "policy": policy, "n": metrics["n"], "right": metrics["correct"],
                "refused": metrics["refusals"],
                "wrong": sum(result.outcome == "answer" and not result.correct for result in results),
                "max_steps": metrics["max_steps"], "pass_rate": metrics["pass_rate"],
                "tool_calls_per_task": metrics["tool_calls_per_task"],
            })
    return rows


def agent_shift_table(rows: list[dict[str, Any]]) -> "Table":
    """:func:`agent_shift_rows` as a rich table."""
    from rich.table import Table

    table = Table(title="Agent under shift (outside the world a wrong answer is an invented one)",
                  caption="asked: questions; calls/q: tool calls per question")
    for column in ("split", "policy", "asked", "right", "refused", "wrong", "pass", "calls/q"):
        table.add_column(column, justify="left" if column in ("split", "policy") else "right", no_wrap=True)
    for row in rows:
        split = row["split"]
        table.add_row(split[len(SHIFT_PREFIX):] if split.startswith(SHIFT_PREFIX) else split, row["policy"],
                      str(row["n"]), str(row["right"]), str(row["refused"]), str(row["wrong"]),
                      f"{row['pass_rate']:.1%}", f"{row['tool_calls_per_task']:.2f}")
    return table
