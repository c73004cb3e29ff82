"""The oracle check of a node's segments (retune_tui/checks.py)."""

from __future__ import annotations

from retune_tui.checks import node_verdict, segment_checks
from retune_tui.tasks import Method, get_task
from retune_tui.trace import DONE, Node, Segment

PARITY = get_task("parity")
PROMPT = "What is the parity of [1, 0, 1]?\nSolution: "
CALL = "Call: What is the parity of [0, 1]?\n"


def parent(returned: str, answer: str) -> Node:
    return Node(0, None, 0, PROMPT, segments=[Segment(CALL, 9, call=1, returned=returned), Segment(answer, 1)],
                children=[1], status=DONE, answer=answer)


def test_each_finished_segment_is_checked_against_the_oracle_in_its_own_context():
    right = segment_checks(PARITY, Method.RETUNING, parent("1", "0"))
    assert [(c.expected, c.got, c.matches) for c in right] == [(CALL, CALL, True), ("0", "0", True)]
    assert node_verdict(right) is True
    wrong = segment_checks(PARITY, Method.RETUNING, parent("1", "1"))
    assert [c.matches for c in wrong] == [True, False] and node_verdict(wrong) is False


def test_a_segment_after_a_value_the_oracle_would_never_get_is_not_judged():
    checks = segment_checks(PARITY, Method.RETUNING, parent("7", "0"))  # parity returns 0 or 1
    assert [(c.expected, c.matches) for c in checks] == [(CALL, True), (None, None)]
    assert node_verdict(checks) is True  # the call was right; what came after cannot be told
    assert node_verdict(checks[1:]) is None and node_verdict([]) is None
