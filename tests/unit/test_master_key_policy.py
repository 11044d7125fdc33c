"""Which master key writes which object (gateway.keys.policy): longest prefix wins, the default otherwise."""
from __future__ import annotations

from gateway.keys.policy import KeyRule, MasterKeyPolicy

POLICY = MasterKeyPolicy("default", (
    KeyRule("finance", "", "finance"),
    KeyRule("finance", "payroll/", "payroll"),
    KeyRule("finance", "payroll/2026/", "payroll-2026"),
    KeyRule("logs-*", "", "logs"),
    KeyRule("logs-*", "", "logs-second"),  # as long as the one before: the first listed wins
))


def test_longest_matching_prefix_wins() -> None:
    assert POLICY.key_for("finance", "report.pdf") == "finance"
    assert POLICY.key_for("finance", "payroll/jan.csv") == "payroll"
    assert POLICY.key_for("finance", "payroll/2026/jan.csv") == "payroll-2026"
    assert POLICY.key_for("finance", "payroll") == "finance"  # a prefix, not a directory name


def test_bucket_patterns_ties_and_the_default() -> None:
    assert POLICY.key_for("logs-eu", "x") == "logs"
    assert POLICY.key_for("logs", "x") == "default"
    assert POLICY.key_for("other", "payroll/jan.csv") == "default"


def test_every_key_once_default_first() -> None:
    assert POLICY.key_ids() == ("default", "finance", "payroll", "payroll-2026", "logs", "logs-second")
    assert MasterKeyPolicy("only").key_ids() == ("only",)
