"""Who gets the next free GPU: the scheduling policy, as pure functions of what the database holds.

1. Urgent work first (a QoS level above fair share, app.scheduling.priorities).
2. Projects within their GPU quota before projects at it: a project past its quota only borrows a GPU
   nobody within quota is waiting for, and borrowed GPUs are the first reclaimed (app.scheduling.service).
3. Fair share: the project furthest below its share of the fleet, i.e. the fewest running jobs per unit of
   `share_weight`; on a tie, the fewest jobs started in the last hour per unit of weight, so weights also
   decide on a small fleet, where every project often runs 0 or 1 job.
4. Priority, then age (the job id: a requeued job keeps its place).

Each project offers only its own best job (priority, then age), so a decision looks at one job per
project, not at the whole queue.
"""

from bisect import bisect_left
from dataclasses import dataclass
from operator import itemgetter

from app.scheduling.priorities import Priority


@dataclass(frozen=True)
class Waiting:
    """A queued job as the scheduler sees it."""

    id: int
    project_id: int
    priority: int
    pool: str | None


@dataclass
class Load:
    """A project's share of the fleet right now."""

    running: int = 0
    quota: int | None = None
    weight: float = 1.0
    recent: int = 0  # jobs started within the fair-share window

    @property
    def at_quota(self) -> bool:
        return self.quota is not None and self.running >= self.quota


def standing(priority: int, load: Load, started: int = 0) -> tuple[bool, bool, float, float, int]:
    """`rank` without the job's id: what a job of `priority` heading its project weighs once `started` more
    of the project's jobs started (each one more running and one more recent start). Second item: at quota."""
    running, recent = load.running + started, load.recent + started
    at_quota = load.quota is not None and running >= load.quota
    return (priority < Priority.URGENT, at_quota, running / load.weight, recent / load.weight, -priority)


def rank(job: Waiting, load: Load, started: int = 0) -> tuple[bool, bool, float, float, int, int]:
    """The sort key of a project's head job (`standing`, then age): the smallest starts first."""
    return (*standing(job.priority, load, started), job.id)


def choose(heads: list[Waiting], loads: dict[int, Load]) -> tuple[Waiting, bool] | None:
    """The job the next free GPU goes to among the projects' head jobs, and whether it borrows (its project
    is at its quota); None when nothing waits."""
    if not heads:
        return None
    best = min(heads, key=lambda job: rank(job, loads.setdefault(job.project_id, Load())))
    return best, loads[best.project_id].at_quota


def order(queued: list[Waiting], loads: dict[int, Load]) -> list[tuple[Waiting, bool]]:
    """Every queued job in the order `choose` would start them if each took a GPU and none finished: a
    job's place in line. `queued` in any order; `loads` is not changed.

    A project's jobs start in its own order (priority, then age), the k-th once k of them started: its
    rank is then `rank` with k more running and k more recent starts. Within a project that rank only
    grows with k (the share (running + k) / weight does; "not urgent" and "at quota" only turn true),
    so repeated `choose` merges the projects' lines: it is a sort of every job by that rank, without
    simulating each start."""
    by_project: dict[int, list[Waiting]] = {}
    for job in sorted(queued, key=lambda j: (-j.priority, j.id)):
        by_project.setdefault(job.project_id, []).append(job)
    # (standing, id) sorts as `rank` does, without a call to unpack one tuple into another per job.
    ranked = [
        ((standing(job.priority, load, started), job.id), job)
        for project_id, jobs in by_project.items()
        for load in [loads.get(project_id, Load())]
        for started, job in enumerate(jobs)
    ]
    ranked.sort(key=itemgetter(0))  # no two ranks are equal: each ends with its job's id
    return [(job, key[0][1]) for key, job in ranked]


@dataclass(frozen=True)
class Group:
    """A project's queued jobs of one priority, counted for one job's place in line."""

    project_id: int
    priority: int
    count: int
    older: int  # how many of them are older than the job placed (a smaller id)


def place(job: Waiting, groups: list[Group], loads: dict[int, Load]) -> tuple[int, int, bool]:
    """`job`'s place in `order`'s line, counted without building the line: (its place, from 1; how many
    jobs of a higher priority are ahead of it; whether it borrows at its turn). `groups`: every project's
    queued jobs by priority (`job` among them), counted for `job`.

    A project's jobs ahead of `job` are the first ones of its own order (priority, then age), since their
    ranks grow along it (`order`): a binary search over the project's order finds how many, by rank."""
    by_project: dict[int, list[Group]] = {}
    for group in sorted(groups, key=lambda g: -g.priority):
        by_project.setdefault(group.project_id, []).append(group)
    mine = by_project[job.project_id]
    started = sum(g.count for g in mine if g.priority > job.priority)
    started += next(g.older for g in mine if g.priority == job.priority)
    target = standing(job.priority, loads.get(job.project_id, Load()), started)
    position, higher = 1, 0
    for project_id, line in by_project.items():
        load = loads.get(project_id, Load())

        def behind(k: int, line: list[Group] = line, load: Load = load) -> bool:
            """Whether the project's k-th job (from 0) ranks after `job`, or is `job`."""
            first = 0  # the place in the project's order of its group's first job
            for group in line:
                if k < first + group.count:
                    theirs = standing(group.priority, load, k)
                    # On a tie of all but age (same priority), the older job goes first.
                    return theirs > target or (theirs == target and k - first >= group.older)
                first += group.count
            raise IndexError(k)

        ahead = bisect_left(range(sum(g.count for g in line)), True, key=behind)
        position += ahead
        higher += min(ahead, sum(g.count for g in line if g.priority > job.priority))
    return position, higher, target[1]
