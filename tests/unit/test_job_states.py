import pytest

from app.core.jobs import TERMINAL, InvalidTransition, JobStatus, can_transition, check_transition


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("queued", "running"),
        ("queued", "cancelled"),
        ("running", "completed"),
        ("running", "failed"),
        ("running", "stopping"),
        ("stopping", "stopped"),
        ("running", "queued"),  # worker lost: back to the queue with a new attempt
    ],
)
def test_allowed_transitions(current: str, target: str) -> None:
    check_transition(JobStatus(current), JobStatus(target))


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_change_only_by_resume(terminal: JobStatus) -> None:
    resumable = terminal in {JobStatus.STOPPED, JobStatus.FAILED}
    assert [t for t in JobStatus if can_transition(terminal, t)] == ([JobStatus.QUEUED] if resumable else [])


@pytest.mark.parametrize(
    ("current", "target"), [("queued", "completed"), ("queued", "stopping"), ("stopping", "running")]
)
def test_forbidden_transitions_raise(current: str, target: str) -> None:
    with pytest.raises(InvalidTransition, match=f"a {current} job cannot become {target}"):
        check_transition(JobStatus(current), JobStatus(target))
