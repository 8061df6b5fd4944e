"""`strip_thresholds`: what the live proof evaluates in place of each alert expression."""

from __future__ import annotations

import pytest

from mandate_vault_harness.promql import strip_thresholds


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(errors_total[5m])) > 10", "sum(rate(errors_total[5m]))"),
        ("db_connections_active >= 20", "db_connections_active"),
        ("up == 0", "up"),
        ("x != 1", "x"),
        ("x <= 1e3", "x"),
        ("x < -0.5", "x"),
        ("x > bool 0.2", "x"),
        ("x > +Inf", "x"),
        # a comparison inside a call, a matcher or a string is not the threshold
        (
            "histogram_quantile(0.95,\n  rate(http_request_duration_seconds_bucket[5m])\n) > 2.0\n",
            "histogram_quantile(0.95,\n  rate(http_request_duration_seconds_bucket[5m])\n)",
        ),
        (
            '(sum(rate(jwt_verifications_total{status!="VALID"}[5m])) /\n'
            " sum(rate(jwt_verifications_total[5m]))) > 0.2",
            '(sum(rate(jwt_verifications_total{status!="VALID"}[5m])) /\n'
            " sum(rate(jwt_verifications_total[5m])))",
        ),
        ('count(x{a=">1"})', 'count(x{a=">1"})'),
        ("sum(x > 3)", "sum(x > 3)"),
        # vector-to-vector comparisons are not thresholds
        ("a > b", "a > b"),
        ("a > on(job) b", "a > on(job) b"),
        # set operators: every top-level branch loses its threshold
        (
            "outbox_backlog > 100 and deriv(outbox_backlog[10m]) > 0",
            "outbox_backlog and deriv(outbox_backlog[10m])",
        ),
        ("(a > 0)\nor (b > 0)\nor (c >= 1)", "(a) or (b) or (c)"),
        ("a > 1 unless on(job) b == 0", "a unless on(job) b"),
        ("a > 1 and ignoring(x) group_left b < 2", "a and ignoring(x) group_left b"),
        # nested parentheses around a set-operator expression
        ("((a > 1) or (b > 2)) and c > 3", "((a) or (b)) and c"),
        # a chain of comparisons loses all of its numeric tails
        ("a > 10 < 20", "a"),
        # metric names that contain an operator word are not split
        ("sum by (x) (order_total) > 1", "sum by (x) (order_total)"),
        ("andromeda > 1 or oracle", "andromeda or oracle"),
    ],
)
def test_strip_thresholds(expr: str, expected: str) -> None:
    assert strip_thresholds(expr) == expected


def test_every_branch_of_a_multiline_or_rule() -> None:
    expr = (
        "(sum by (job, instance, receiver) (rate(otelcol_receiver_refused_spans_total[5m])) > 0)\n"
        "or (sum by (job, instance, receiver) (rate(otelcol_receiver_refused_log_records_total[5m])) > 0)\n"
    )
    assert strip_thresholds(expr) == (
        "(sum by (job, instance, receiver) (rate(otelcol_receiver_refused_spans_total[5m])))"
        " or (sum by (job, instance, receiver) (rate(otelcol_receiver_refused_log_records_total[5m])))"
    )


def test_unbalanced_expressions_are_refused() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        strip_thresholds("sum(rate(x[5m]) > 1")
