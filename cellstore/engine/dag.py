"""Orders stages by their dependencies and resolves dbt-style selections."""

from __future__ import annotations

from cellstore.engine.project import Project
from cellstore.errors import CellstoreError


def topological_order(project: Project, after: dict[str, set[str]] | None = None) -> list[str]:
    """Stage names, every stage after all the stages it reads from (ties by name).

    `after`: soft edges, {stage: stages to run first when the order allows it} (a stage
    whose checks read another table runs after that table's stage); never a cycle error.
    """
    upstream = {name: set(project.upstream_stages(s)) for name, s in project.stages.items()}
    soft = after or {}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(upstream):
        hard = [n for n, ups in upstream.items() if n not in done and ups <= done]
        pending = set(upstream) - done
        ready = sorted(n for n in hard if not (soft.get(n, set()) & pending - {n}))
        ready = ready or sorted(hard)  # soft edges yield rather than deadlock
        if not ready:
            raise CellstoreError(_describe_cycle(project, upstream, done))
        order.extend(ready)
        done.update(ready)
    return order


def _describe_cycle(project: Project, upstream: dict[str, set[str]], done: set[str]) -> str:
    # Walk upstream from any blocked stage until a stage repeats: that loop is the cycle.
    path: list[str] = []
    node = min(n for n in upstream if n not in done)
    while node not in path:
        path.append(node)
        node = min(u for u in upstream[node] if u not in done)
    loop = path[path.index(node) :] + [node]
    files = " -> ".join(str(project.stages[n].path.relative_to(project.root)) for n in loop)
    return f"dependency cycle: {files}"


def downstream(project: Project, name: str) -> set[str]:
    """Stages that read (directly or not) from stage `name`."""
    readers: dict[str, set[str]] = {n: set() for n in project.stages}
    for stage_name, stage in project.stages.items():
        for up in project.upstream_stages(stage):
            readers[up].add(stage_name)
    seen: set[str] = set()
    todo = [name]
    while todo:
        for reader in readers[todo.pop()]:
            if reader not in seen:
                seen.add(reader)
                todo.append(reader)
    return seen


def upstream(project: Project, name: str) -> set[str]:
    """Stages that stage `name` reads from, directly or not."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for up in project.upstream_stages(project.stages[todo.pop()]):
            if up not in seen:
                seen.add(up)
                todo.append(up)
    return seen


def select(project: Project, selectors: list[str] | None) -> set[str]:
    """dbt-style selection: `a`, `+a` (with ancestors), `a+` (with descendants), `+a+`.

    Selectors may be given several times or comma/space separated; none means everything.
    """
    if not selectors:
        return set(project.stages)
    chosen: set[str] = set()
    for raw in selectors:
        for token in raw.replace(",", " ").split():
            with_up, with_down = token.startswith("+"), token.endswith("+")
            name = token.strip("+")
            if not name:
                raise CellstoreError(f"empty selector {token!r}")
            stage = project.stage_for(name).name
            chosen.add(stage)
            if with_up:
                chosen |= upstream(project, stage)
            if with_down:
                chosen |= downstream(project, stage)
    return chosen
