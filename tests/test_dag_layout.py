"""DAG layout for the web UI: levels, geometry, edge paths, crossings, and refused DAGs."""

from __future__ import annotations

import re

import pytest

from node.http.ui.dag import (
    BOX_HEIGHT,
    BOX_WIDTH,
    MARGIN,
    Box,
    DagNode,
    DagPicture,
    layout,
)

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def step(id: str, *inputs: str) -> DagNode:
    return DagNode(id=id, kind="SOURCE" if not inputs else "EFFECT", inputs=inputs)


def diamond() -> list[DagNode]:
    return [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]


def layered(seed: int, columns: int = 8, per_column: int = 40) -> list[DagNode]:
    """A few hundred steps, each reading one to three scattered steps from the two columns before."""
    nodes = [step(f"n0_{row}") for row in range(per_column)]
    for column in range(1, columns):
        window = [node.id for node in nodes[-per_column * 2 :]]
        for row in range(per_column):
            count = 1 + (row * seed + column) % 3
            spread = row * 7 + column * 13 + seed
            picks = [window[(spread + pick * 11) % len(window)] for pick in range(count)]
            nodes.append(step(f"n{column}_{row}", *picks))
    return nodes


def boxes_by_id(picture: DagPicture) -> dict[str, Box]:
    return {box.id: box for box in picture.boxes}


def crossings(picture: DagPicture) -> int:
    """Pairs of edges between the same two adjacent columns whose ends swap vertical order."""
    boxes = boxes_by_id(picture)
    spans = [(boxes[edge.source], boxes[edge.target]) for edge in picture.edges]
    count = 0
    for index, (source, target) in enumerate(spans):
        for other_source, other_target in spans[index + 1 :]:
            same_columns = (source.level, target.level) == (other_source.level, other_target.level)
            if same_columns and (source.y - other_source.y) * (target.y - other_target.y) < 0:
                count += 1
    return count


def test_diamond_levels() -> None:
    """A diamond gets levels 0, 1, 1, 2, with boxes in level order."""
    picture = layout(diamond())
    assert [(box.id, box.level) for box in picture.boxes] == [("a", 0), ("b", 1), ("c", 1), ("d", 2)]
    boxes = boxes_by_id(picture)
    assert boxes["a"].x < boxes["b"].x == boxes["c"].x < boxes["d"].x
    assert boxes["b"].y < boxes["c"].y


def test_columns_centred_vertically() -> None:
    """Shorter columns are centred against the tallest one."""
    boxes = boxes_by_id(layout(diamond()))
    middle = (boxes["b"].y + boxes["c"].y + BOX_HEIGHT) / 2
    assert boxes["a"].y + BOX_HEIGHT / 2 == middle
    assert boxes["d"].y + BOX_HEIGHT / 2 == middle


def test_boxes_inside_the_picture() -> None:
    """Every box lies inside the drawing, at least a margin from its edges."""
    picture = layout(layered(seed=1))
    for box in picture.boxes:
        assert (box.width, box.height) == (BOX_WIDTH, BOX_HEIGHT)
        assert box.x >= MARGIN and box.x + box.width <= picture.width - MARGIN
        assert box.y >= MARGIN and box.y + box.height <= picture.height - MARGIN


def test_boxes_do_not_overlap() -> None:
    """No two boxes share any area."""
    boxes = layout(layered(seed=2)).boxes
    for index, box in enumerate(boxes):
        for other in boxes[index + 1 :]:
            apart_x = box.x + box.width <= other.x or other.x + other.width <= box.x
            apart_y = box.y + box.height <= other.y or other.y + other.height <= box.y
            assert apart_x or apart_y, (box.id, other.id)


def test_edges_run_from_right_middle_to_left_middle() -> None:
    """Each edge path starts at its source's right middle and ends at its target's left middle."""
    picture = layout(layered(seed=3, columns=4, per_column=6))
    boxes = boxes_by_id(picture)
    assert picture.edges
    for edge in picture.edges:
        assert edge.path.startswith("M ") and " C " in edge.path
        numbers = [float(number) for number in NUMBER.findall(edge.path)]
        source, target = boxes[edge.source], boxes[edge.target]
        assert len(numbers) == 8 * (target.level - source.level)  # a curve, and one per column crossed
        assert numbers[:2] == pytest.approx([source.x + source.width, source.y + source.height / 2], abs=0.05)
        assert numbers[-2:] == pytest.approx([target.x, target.y + target.height / 2], abs=0.05)


def test_edges_follow_inputs() -> None:
    """There is one edge per distinct input, from the input to the step reading it."""
    picture = layout(diamond())
    assert [(edge.source, edge.target) for edge in picture.edges] == [
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    ]


def test_repeated_input_draws_one_edge() -> None:
    """A step reading the same input twice gets a single edge."""
    picture = layout([step("clip"), step("twice", "clip", "clip")])
    assert [(edge.source, edge.target) for edge in picture.edges] == [("clip", "twice")]


def test_output_is_marked() -> None:
    """Only the named output's box is marked as the output; by default none is."""
    assert [box.id for box in layout(diamond(), output="d").boxes if box.is_output] == ["d"]
    assert not any(box.is_output for box in layout(diamond()).boxes)


def test_detail_and_kind_carried() -> None:
    """Boxes carry their step's kind and second line."""
    picture = layout([DagNode(id="input", kind="SOURCE", inputs=(), detail="input: image")])
    assert (picture.boxes[0].kind, picture.boxes[0].detail) == ("SOURCE", "input: image")


def test_empty_dag_is_an_empty_picture() -> None:
    """No steps give no boxes and a picture the size of its margins."""
    assert layout([]) == DagPicture(boxes=(), edges=(), width=2 * MARGIN, height=2 * MARGIN)


def test_unknown_input_refused() -> None:
    """An input naming a step that does not exist is refused, naming both."""
    with pytest.raises(ValueError, match="'b' reads unknown step 'ghost'"):
        layout([step("a"), step("b", "ghost")])


def test_cycle_refused() -> None:
    """A cycle is refused, and the message spells it out."""
    with pytest.raises(ValueError, match="cycle: a -> b -> c -> a"):
        layout([step("s"), step("a", "s", "c"), step("b", "a"), step("c", "b"), step("after", "c")])


def test_self_loop_refused() -> None:
    """A step reading itself is a cycle."""
    with pytest.raises(ValueError, match="cycle: a -> a"):
        layout([step("a", "a")])


def test_duplicate_id_refused() -> None:
    """Two steps with the same id are refused."""
    with pytest.raises(ValueError, match="duplicate step id 'a'"):
        layout([step("a"), step("a")])


def test_unknown_output_refused() -> None:
    """An output id that is not a step is refused."""
    with pytest.raises(ValueError, match="output 'nope'"):
        layout(diamond(), output="nope")


def test_long_chain() -> None:
    """A 2,000-step chain lays out (no recursion limit) with one column per step."""
    nodes = [step("s0")] + [step(f"s{index}", f"s{index - 1}") for index in range(1, 2000)]
    picture = layout(nodes)
    assert [box.level for box in picture.boxes] == list(range(2000))
    assert len(picture.edges) == 1999
    assert picture.height == 2 * MARGIN + BOX_HEIGHT


def test_barycenter_uncrosses_swapped_targets() -> None:
    """Targets given in the opposite order to their sources are swapped so the edges do not cross."""
    nodes = [step("s1"), step("s2"), step("t2", "s2"), step("t1", "s1")]
    boxes = boxes_by_id(layout(nodes))
    assert boxes["s1"].y < boxes["s2"].y
    assert boxes["t1"].y < boxes["t2"].y
    assert crossings(layout(nodes)) == 0


def test_barycenter_reduces_crossings() -> None:
    """On a larger DAG the sweeps leave fewer crossings than the given order would."""
    nodes = layered(seed=4, columns=3, per_column=10)
    given = crossings(unordered_picture(nodes))
    assert crossings(layout(nodes)) < given


def unordered_picture(nodes: list[DagNode]) -> DagPicture:
    """The layout with every column kept in the given order, to count its crossings."""
    picture = layout(nodes)
    rows: dict[int, int] = {}
    order = {node.id: index for index, node in enumerate(nodes)}
    boxes = []
    for box in sorted(picture.boxes, key=lambda box: (box.level, order[box.id])):
        row = rows.get(box.level, 0)
        rows[box.level] = row + 1
        boxes.append(Box(**{**box.__dict__, "y": float(row)}))
    return DagPicture(boxes=tuple(boxes), edges=picture.edges, width=picture.width, height=picture.height)


def points_along(path: str, steps: int = 24) -> list[tuple[float, float]]:
    """Points along an SVG path of M, C and L commands, each curve sampled ``steps`` times."""
    tokens = re.findall(r"[MCL]|-?\d+(?:\.\d+)?", path)
    points: list[tuple[float, float]] = []
    here = (0.0, 0.0)
    index = 0
    while index < len(tokens):
        command = tokens[index]
        count = {"M": 2, "L": 2, "C": 6}[command]
        values = [float(token) for token in tokens[index + 1 : index + 1 + count]]
        index += 1 + count
        if command == "C":
            (x1, y1), (x2, y2), (x3, y3) = zip(values[::2], values[1::2], strict=True)
            for t in (i / steps for i in range(steps + 1)):
                u = 1 - t
                points.append((
                    u**3 * here[0] + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3,
                    u**3 * here[1] + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3,
                ))  # fmt: skip
        elif command == "L":
            (x0, y0), (x1, y1) = here, (values[0], values[1])
            points.extend((x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(steps + 1))
        here = (values[-2], values[-1])
        points.append(here)
    return points


@pytest.mark.parametrize(
    "nodes",
    [
        [step("a"), step("b", "a"), step("c", "b"), step("d", "a", "c")],  # a -> d skips b and c's columns
        [
            step("src"),
            step("x", "src"),
            step("y", "x"),
            step("z", "y"),
            step("mix", "src", "z"),
            step("out", "mix", "x"),
        ],
        layered(seed=5, columns=5, per_column=5),
    ],
)
def test_no_edge_runs_through_another_box(nodes: list[DagNode]) -> None:
    """An edge that skips columns passes between the boxes of the columns it crosses (before,
    a -> d was drawn straight through b and c)."""
    picture = layout(nodes)
    for edge in picture.edges:
        others = [box for box in picture.boxes if box.id not in (edge.source, edge.target)]
        for x, y in points_along(edge.path):
            inside = [
                box.id for box in others if box.x < x < box.x + box.width and box.y < y < box.y + box.height
            ]
            assert not inside, f"{edge.source} -> {edge.target} runs through {inside} at ({x:.0f}, {y:.0f})"
