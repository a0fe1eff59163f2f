"""The scheduling policy (app/scheduling/policy.py) as pure functions: who the next free GPU goes to, and the
line `order` draws from the same rule. No database."""

import random

from app.scheduling.policy import Group, Load, Waiting, choose, order, place
from app.scheduling.priorities import Priority

LOW, NORMAL, HIGH, URGENT = Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT


def job(job_id: int, project: int, priority: int = NORMAL) -> Waiting:
    return Waiting(job_id, project, priority, None)


def chosen(heads: list[Waiting], loads: dict[int, Load]) -> tuple[int, bool] | None:
    decision = choose(heads, loads)
    return None if decision is None else (decision[0].id, decision[1])


def ids(line: list[tuple[Waiting, bool]]) -> list[int]:
    return [waiting.id for waiting, _ in line]


def test_nothing_waiting_chooses_nothing() -> None:
    assert choose([], {}) is None
    assert order([], {1: Load(running=3)}) == []


def test_the_project_with_fewest_running_per_weight_goes_first() -> None:
    # 2 running on weight 4 (0.5) is further below its share than 1 running on weight 1 (1.0).
    loads = {1: Load(running=1, weight=1.0), 2: Load(running=2, weight=4.0)}
    assert chosen([job(1, project=1), job(2, project=2)], loads) == (2, False)
    # With equal weights the same counts go the other way.
    loads = {1: Load(running=1), 2: Load(running=2)}
    assert chosen([job(1, project=1), job(2, project=2)], loads) == (1, False)


def test_a_tie_in_running_goes_to_the_fewest_recent_starts_per_weight() -> None:
    # Both run nothing now; 4 starts on weight 3 (1.33) is further below its share than 2 on weight 1.
    loads = {1: Load(recent=2, weight=1.0), 2: Load(recent=4, weight=3.0)}
    assert chosen([job(1, project=1, priority=HIGH), job(2, project=2)], loads) == (2, False)
    # Running still decides first.
    loads = {1: Load(recent=0), 2: Load(running=1, recent=0)}
    assert chosen([job(2, project=2), job(1, project=1)], loads) == (1, False)


def test_a_project_unknown_to_the_loads_runs_nothing_and_weighs_one() -> None:
    assert chosen([job(5, project=1), job(9, project=7)], {1: Load(running=1)}) == (9, False)


def test_priority_then_age_break_a_tie_in_share() -> None:
    loads = {1: Load(), 2: Load()}
    assert chosen([job(1, project=1, priority=NORMAL), job(2, project=2, priority=HIGH)], loads) == (2, False)
    assert chosen([job(4, project=1), job(3, project=2)], loads) == (3, False)
    # ...but only a tie: a higher priority does not beat a project further below its share.
    loads = {1: Load(), 2: Load(running=1)}
    assert chosen([job(1, project=1, priority=LOW), job(2, project=2, priority=HIGH)], loads) == (1, False)


def test_a_project_at_its_quota_only_borrows_when_nobody_within_quota_waits() -> None:
    loads = {1: Load(running=2, quota=2), 2: Load(running=5)}
    # Far below its share, high priority and older, project 1 still waits for project 2 (no quota).
    assert chosen([job(1, project=1, priority=HIGH), job(2, project=2, priority=LOW)], loads) == (2, False)
    # Alone, it borrows the GPU: the decision says so.
    assert chosen([job(1, project=1, priority=HIGH)], loads) == (1, True)
    # Under its quota it competes by share as usual.
    loads[1] = Load(running=1, quota=2)
    assert chosen([job(1, project=1), job(2, project=2)], loads) == (1, False)


def test_a_quota_of_zero_makes_every_job_borrow() -> None:
    assert chosen([job(1, project=1)], {1: Load(quota=0)}) == (1, True)


def test_urgent_jobs_go_before_fair_share_and_quotas() -> None:
    loads = {1: Load(running=9, quota=9, weight=0.5), 2: Load()}
    assert chosen([job(1, project=1, priority=URGENT), job(2, project=2, priority=HIGH)], loads) == (1, True)
    # Between urgent jobs, the usual rule: project 2 is below its quota and share.
    heads = [job(1, project=1, priority=URGENT), job(2, project=2, priority=URGENT)]
    assert chosen(heads, loads) == (2, False)


def test_order_lines_up_each_project_behind_its_own_priority_and_age() -> None:
    queued = [job(1, 1), job(2, 1, HIGH), job(3, 2), job(4, 2), job(5, 1)]
    # Project 1 offers 2 (high) then 1 then 5; project 2 offers 3 then 4; shares alternate, project 1 first
    # because its head job is of higher priority.
    assert ids(order(queued, {})) == [2, 3, 1, 4, 5]


def test_order_follows_the_weights() -> None:
    queued = [job(i, 1) for i in range(1, 7)] + [job(i, 2) for i in range(7, 10)]
    line = order(queued, {1: Load(weight=2.0), 2: Load(weight=1.0)})
    # Running per weight before each start (project 1, project 2): (0, 0) age picks 1; (0.5, 0) 7;
    # (0.5, 1) 2; (1, 1) a tie, age picks 3 over 8; (1.5, 1) 8; (1.5, 2) 4; (2, 2) 5 over 9; then 9, 6.
    assert ids(line) == [1, 7, 2, 3, 8, 4, 5, 9, 6]


def test_order_marks_the_jobs_that_would_borrow() -> None:
    queued = [job(1, 1), job(2, 1), job(3, 1), job(4, 2)]
    line = order(queued, {1: Load(quota=2), 2: Load(quota=1, running=1)})
    # Project 1 has room for two; then both projects are at quota and borrow, by share (2/1 vs 1/1).
    assert [(w.id, borrows) for w, borrows in line] == [(1, False), (2, False), (4, True), (3, True)]


def test_order_does_not_change_the_loads_it_is_given() -> None:
    loads = {1: Load(running=1, quota=2, weight=2.0)}
    order([job(1, 1), job(2, 1), job(3, 3)], loads)
    assert loads == {1: Load(running=1, quota=2, weight=2.0)}


def repeated_choose(queued: list[Waiting], loads: dict[int, Load]) -> list[tuple[int, bool]]:
    """The line by definition: each project offers its best job, one starts, its project runs (and has
    started) one more."""
    loads = {p: Load(load.running, load.quota, load.weight, load.recent) for p, load in loads.items()}
    left, line = list(queued), []
    while left:
        projects = {w.project_id for w in left}
        heads = [
            min((w for w in left if w.project_id == p), key=lambda w: (-w.priority, w.id)) for p in projects
        ]
        decision = choose(heads, loads)
        assert decision is not None
        line.append((decision[0].id, decision[1]))
        loads[decision[0].project_id].running += 1
        loads[decision[0].project_id].recent += 1
        left.remove(decision[0])
    return line


def random_workload(
    rng: random.Random, projects: int, ids: int, jobs: tuple[int, int], recent: bool = False
) -> tuple[list[Waiting], dict[int, Load]]:
    """Up to `projects` projects' queued jobs (ids below `ids`) of random priorities, and their loads."""
    count = rng.randint(1, projects)
    job_ids = rng.sample(range(1, ids), rng.randint(*jobs))
    queued = [job(i, rng.randint(1, count), rng.choice(list(Priority))) for i in job_ids]
    loads = {
        p: Load(
            rng.randint(0, 3),
            rng.choice([None, 0, 1, 2, 3]),
            rng.choice([0.5, 1.0, 2.0, 3.0]),
            *([rng.randint(0, 4)] if recent else []),
        )
        for p in range(1, count + 1)
        if rng.random() < 0.8  # some projects have no row yet: running 0, no quota, weight 1
    }
    return queued, loads


def test_order_is_choose_repeated_with_the_chosen_project_running_one_more() -> None:
    rng = random.Random(17)
    for _ in range(300):
        queued, loads = random_workload(rng, projects=4, ids=100, jobs=(0, 12))
        line = [(w.id, borrows) for w, borrows in order(queued, loads)]
        assert line == repeated_choose(queued, loads), (queued, loads)


def groups_for(placed: Waiting, queued: list[Waiting]) -> list[Group]:
    """What app/scheduling/service.py counts in SQL for one job: each project's queued jobs by priority."""
    keys = {(w.project_id, w.priority) for w in queued}
    return [
        Group(p, level, sum(1 for w in queued if (w.project_id, w.priority) == (p, level)), older)
        for p, level in keys
        for older in [sum(1 for w in queued if (w.project_id, w.priority) == (p, level) and w.id < placed.id)]
    ]


def test_place_counts_a_job_to_the_same_place_as_order() -> None:
    rng = random.Random(19)
    for _ in range(300):
        queued, loads = random_workload(rng, projects=5, ids=200, jobs=(1, 25), recent=True)
        line = order(queued, loads)
        for position, (waiting, borrows) in enumerate(line, start=1):
            higher = sum(1 for ahead, _ in line[: position - 1] if ahead.priority > waiting.priority)
            assert place(waiting, groups_for(waiting, queued), loads) == (position, higher, borrows), (
                waiting,
                queued,
                loads,
            )
