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

import heapq
from dataclasses import dataclass

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


def rank(job: Waiting, load: Load) -> tuple[bool, bool, float, float, int, int]:
    """The sort key of a project's head job: the smallest starts first."""
    share = (load.running / load.weight, load.recent / load.weight)
    return (job.priority < Priority.URGENT, load.at_quota, *share, -job.priority, job.id)


def choose(heads: list[Waiting], loads: dict[int, Load]) -> tuple[Waiting, bool] | None:
    """The job the next free GPU goes to among the projects' head jobs, and whether it borrows (its project
    is at its quota); None when nothing waits."""
    if not heads:
        return None
    best = min(heads, key=lambda job: rank(job, loads.setdefault(job.project_id, Load())))
    return best, loads[best.project_id].at_quota


def order(queued: list[Waiting], loads: dict[int, Load]) -> list[tuple[Waiting, bool]]:
    """Every queued job in the order `choose` would start them if each took a GPU and none finished: a
    job's place in line. `queued` in any order; `loads` is not changed."""
    by_project: dict[int, list[Waiting]] = {}
    for job in sorted(queued, key=lambda j: (-j.priority, j.id)):
        by_project.setdefault(job.project_id, []).append(job)
    simulated = {p: Load(load.running, load.quota, load.weight, load.recent) for p, load in loads.items()}
    heap = []
    for project_id, jobs in by_project.items():
        load = simulated.setdefault(project_id, Load())
        heap.append((rank(jobs[0], load), project_id, 0))
    heapq.heapify(heap)
    line = []
    while heap:
        _, project_id, index = heapq.heappop(heap)
        job, load = by_project[project_id][index], simulated[project_id]
        line.append((job, load.at_quota))
        load.running += 1
        load.recent += 1
        if index + 1 < len(by_project[project_id]):
            heapq.heappush(heap, (rank(by_project[project_id][index + 1], load), project_id, index + 1))
    return line
