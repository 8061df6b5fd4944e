"""What the delivery log keeps of an answer, and how a batch moves endpoint health (units)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mandate_vault_worker.delivery import BODY_LIMIT, AttemptResult, Outcome, readable_body
from mandate_vault_worker.store import Delivery, StateWrite, WriteKind, endpoint_health


def test_the_body_is_cut_at_one_kib_made_printable_and_redacted() -> None:
    assert readable_body(b"") is None
    assert readable_body(b"x" * 5000) == "x" * BODY_LIMIT
    cut = readable_body(b"a" * (BODY_LIMIT - 1) + "é".encode())  # a character cut in two
    assert cut == "a" * (BODY_LIMIT - 1) + "\ufffd"
    shown = readable_body(b"ok\tline\r\nbell\x07 nul\x00 del\x7f esc\x1b[0m")
    assert shown == "ok\tline\r\nbell? nul? del? esc?[0m"
    secret = readable_body(
        b'{"password": "hunter2", "note": "Bearer abc.def", "k": "mvk_x1", "pin_token": 1234,'
        b' "id": "evt_1", "text": "say \\"token\\": \\"x\\"", "Session": "s'  # cut here
    )
    assert secret == (
        '{"password": "[REDACTED]", "note": "[REDACTED]", "k": "[REDACTED]", '
        '"pin_token": "[REDACTED]", "id": "evt_1", "text": "say \\"token\\": \\"x\\"", '
        '"Session": "[REDACTED]"'
    )
    assert readable_body(b"\xff\xfe plain") == "\ufffd\ufffd plain"


def _write(subscription: str, outcome: Outcome, at: datetime) -> StateWrite:
    delivery = Delivery("msg", subscription, "t", "MandateCreated", "{}", None, None, 0)
    result = AttemptResult(outcome, 500, 0.01)
    return StateWrite(WriteKind.ATTEMPT, delivery, "retrying", 1, at, result=result)


def test_a_batch_clears_health_on_any_success_and_keeps_the_first_failure() -> None:
    t0 = datetime(2026, 12, 8, tzinfo=UTC)
    later = t0 + timedelta(seconds=1)
    writes = [
        _write("b", Outcome.RETRY, later),
        _write("b", Outcome.RETRY, t0),
        _write("a", Outcome.RETRY, t0),
        _write("a", Outcome.SUCCESS, later),
        _write("c", Outcome.GONE, t0),  # a 410 says nothing about health
    ]
    park = StateWrite(WriteKind.PARK, writes[0].delivery, "retrying", 0, t0)
    assert endpoint_health([*writes, park]) == [("a", True, t0), ("b", False, t0)]
