"""Lay out a recipe's DAG for an SVG: one column per level, left to right.

Pure geometry, no I/O: a template draws the boxes and edges this returns. A step's level is the
longest path to it from a step with no inputs. Within a column, steps start in the given order and
are then reordered by barycenter sweeps, which untangle most crossings in the small DAGs recipes
make. Everything is iterative, so a long chain cannot hit the recursion limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

BOX_WIDTH = 160.0
BOX_HEIGHT = 48.0
HORIZONTAL_GAP = 72.0
VERTICAL_GAP = 24.0
MARGIN = 16.0

_COLUMN_STEP = BOX_WIDTH + HORIZONTAL_GAP
_ROW_STEP = BOX_HEIGHT + VERTICAL_GAP


@dataclass(frozen=True)
class DagNode:
    """One step of a recipe: its id, its type, the steps it reads (in order) and a second line."""

    id: str
    kind: str
    inputs: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True)
class Box:
    """Where one step is drawn: top-left corner and size in SVG units, and its column (level)."""

    id: str
    kind: str
    detail: str
    level: int
    x: float
    y: float
    width: float
    height: float
    is_output: bool


@dataclass(frozen=True)
class Edge:
    """A drawn input: an SVG path from the source box's right middle to the target box's left middle."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class DagPicture:
    """The whole drawing: boxes in column order (top to bottom), edges, and the size with margins."""

    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    width: float
    height: float


def layout(nodes: Sequence[DagNode], output: str | None = None) -> DagPicture:
    """Place ``nodes`` in columns by level; ``output`` names the step to mark as the result.

    Raises ``ValueError`` for a duplicate id, an input naming an unknown id, a cycle, or an
    unknown ``output``.
    """
    by_id = _index(nodes)
    if output is not None and output not in by_id:
        raise ValueError(f"output {output!r} is not a step of the DAG")
    if not by_id:
        return DagPicture(boxes=(), edges=(), width=2 * MARGIN, height=2 * MARGIN)
    inputs = {node.id: tuple(dict.fromkeys(node.inputs)) for node in nodes}
    levels = _levels(inputs, _readers(inputs))
    routed, waypoints = _through_columns(inputs, levels)
    columns = _columns([*by_id, *(point for chain in waypoints.values() for point in chain)], levels)
    _untangle(columns, routed, _readers(routed))
    tallest = max(len(column) for column in columns)
    boxes = tuple(_boxes(columns, by_id, tallest, output))
    box_of = {box.id: box for box in boxes}
    centre = _row_centres(columns, tallest)
    edges = tuple(
        Edge(source, box.id, _route(box_of[source], box, waypoints[source, box.id], centre))
        for box in boxes
        for source in inputs[box.id]
    )
    return DagPicture(
        boxes=boxes,
        edges=edges,
        width=2 * MARGIN + len(columns) * _COLUMN_STEP - HORIZONTAL_GAP,
        height=2 * MARGIN + tallest * _ROW_STEP - VERTICAL_GAP,
    )


def _index(nodes: Sequence[DagNode]) -> dict[str, DagNode]:
    by_id: dict[str, DagNode] = {}
    for node in nodes:
        if node.id in by_id:
            raise ValueError(f"duplicate step id {node.id!r}")
        by_id[node.id] = node
    for node in nodes:
        for source in node.inputs:
            if source not in by_id:
                raise ValueError(f"step {node.id!r} reads unknown step {source!r}")
    return by_id


def _readers(inputs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    readers: dict[str, list[str]] = {step: [] for step in inputs}
    for step, sources in inputs.items():
        for source in sources:
            readers[source].append(step)
    return readers


def _levels(inputs: Mapping[str, Sequence[str]], readers: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Kahn's algorithm: a step's level is fixed once all its inputs have been placed."""
    waiting = {step: len(sources) for step, sources in inputs.items()}
    ready = deque(step for step, count in waiting.items() if count == 0)
    levels = dict.fromkeys(ready, 0)
    placed = 0
    while ready:
        step = ready.popleft()
        placed += 1
        for reader in readers[step]:
            levels[reader] = max(levels.get(reader, 0), levels[step] + 1)
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if placed < len(inputs):
        stuck = [step for step, count in waiting.items() if count > 0]
        raise ValueError(f"the DAG has a cycle: {' -> '.join(_cycle(stuck, inputs))}")
    return levels


def _cycle(stuck: Sequence[str], inputs: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among the steps Kahn could not place, each of which has an input also stuck."""
    left = set(stuck)
    path: list[str] = []
    seen: dict[str, int] = {}
    step = stuck[0]
    while step not in seen:
        seen[step] = len(path)
        path.append(step)
        step = next(source for source in inputs[step] if source in left)
    # The walk follows inputs (backwards along edges); reverse it to read in data-flow order.
    cycle = [*path[seen[step] :], step]
    return cycle[::-1]


def _through_columns(
    inputs: Mapping[str, Sequence[str]], levels: dict[str, int]
) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], list[str]]]:
    """An edge that skips columns gets a waypoint in each column it crosses: a slot of its own,
    ordered with the boxes, so it passes between them instead of through one. Returns the
    inputs with waypoints in place of the long edges, and each edge's waypoints (added to
    ``levels``), keyed by (source, target); an edge to the next column has none."""
    routed: dict[str, tuple[str, ...]] = {}
    waypoints: dict[tuple[str, str], list[str]] = {}
    for target, sources in inputs.items():
        direct: list[str] = []
        for source in sources:
            previous, chain = source, []
            for level in range(levels[source] + 1, levels[target]):
                point = f"\0{source}\0{target}\0{level}"  # never a step id: ids are printable
                levels[point], routed[point] = level, (previous,)
                chain.append(point)
                previous = point
            waypoints[source, target] = chain
            direct.append(previous)
        routed[target] = tuple(direct)
    return routed, waypoints


def _columns(ids: Sequence[str], levels: Mapping[str, int]) -> list[list[str]]:
    columns: list[list[str]] = [[] for _ in range(max(levels.values()) + 1)]
    for step in ids:
        columns[levels[step]].append(step)
    return columns


def _untangle(
    columns: list[list[str]],
    inputs: Mapping[str, Sequence[str]],
    readers: Mapping[str, Sequence[str]],
) -> None:
    """Barycenter sweeps, in place: by inputs left to right, by readers right to left, then again.

    Sorting is stable, so ties keep the given order, and steps with no neighbours on the side
    being looked at keep their own position.
    """
    tallest = max(len(column) for column in columns)
    centre: dict[str, float] = {}
    for column in columns:
        _set_centres(column, tallest, centre)
    _sweep(columns[1:], inputs, tallest, centre)
    _sweep(reversed(columns[:-1]), readers, tallest, centre)
    _sweep(columns[1:], inputs, tallest, centre)


def _sweep(
    columns: Iterable[list[str]],
    neighbours: Mapping[str, Sequence[str]],
    tallest: int,
    centre: dict[str, float],
) -> None:
    def barycenter(step: str) -> float:
        around = neighbours[step]
        if not around:
            return centre[step]
        return sum(centre[other] for other in around) / len(around)

    for column in columns:
        column.sort(key=barycenter)
        _set_centres(column, tallest, centre)


def _set_centres(column: Sequence[str], tallest: int, centre: dict[str, float]) -> None:
    """Vertical centres (without the margin), comparable across columns of different heights."""
    top = _column_top(len(column), tallest) + BOX_HEIGHT / 2
    for row, step in enumerate(column):
        centre[step] = top + row * _ROW_STEP


def _column_top(size: int, tallest: int) -> float:
    return (tallest - size) * _ROW_STEP / 2


def _row_centres(columns: Sequence[Sequence[str]], tallest: int) -> dict[str, float]:
    """Each slot's vertical centre in the drawing (boxes and waypoints alike)."""
    centre: dict[str, float] = {}
    for column in columns:
        _set_centres(column, tallest, centre)
    return {step: MARGIN + y for step, y in centre.items()}


def _boxes(
    columns: Sequence[Sequence[str]], by_id: Mapping[str, DagNode], tallest: int, output: str | None
) -> Iterable[Box]:
    for level, column in enumerate(columns):
        top = MARGIN + _column_top(len(column), tallest)
        for row, step in enumerate(column):
            if step not in by_id:
                continue  # a waypoint: a slot an edge passes through, not drawn
            node = by_id[step]
            yield Box(
                id=step,
                kind=node.kind,
                detail=node.detail,
                level=level,
                x=MARGIN + level * _COLUMN_STEP,
                y=top + row * _ROW_STEP,
                width=BOX_WIDTH,
                height=BOX_HEIGHT,
                is_output=step == output,
            )


def _route(source: Box, target: Box, waypoints: Sequence[str], centre: Mapping[str, float]) -> str:
    """From the source's right middle to the target's left middle: a curve across each gap
    between columns, and straight through each waypoint's slot in the columns between."""
    x, y = source.x + source.width, source.y + source.height / 2
    path = [f"M {x:.1f} {y:.1f}"]
    for level, point in zip(range(source.level + 1, target.level), waypoints, strict=True):
        left = MARGIN + level * _COLUMN_STEP
        path.append(_curve(x, y, left, centre[point]))
        x, y = left + BOX_WIDTH, centre[point]
        path.append(f"L {x:.1f} {y:.1f}")
    path.append(_curve(x, y, target.x, target.y + target.height / 2))
    return " ".join(path)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = (x2 - x1) / 2
    return f"C {x1 + bend:.1f} {y1:.1f}, {x2 - bend:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}"
