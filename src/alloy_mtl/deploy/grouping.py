"""Group the nodes of a Kedro pipeline into steps and derive the steps' dependencies from the graph.

A node's group is, in this order: its entry in ``grouping.nodes``, the group of one of its tags in
``grouping.tags``, its top-level namespace (``by: namespace``, the default: each architecture's train +
evaluate is one step), the group of the first registered pipeline in ``grouping.pipelines`` that holds it,
or its own name.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kedro.pipeline import Node, Pipeline

from alloy_mtl.deploy.config import GroupingConfig
from alloy_mtl.deploy.errors import DeployError

PARAMETER_PREFIXES = ("params:",)
PARAMETERS = "parameters"


def is_parameter(dataset: str) -> bool:
    """Kedro parameters reach a step through its configuration, never through storage."""
    return dataset == PARAMETERS or dataset.startswith(PARAMETER_PREFIXES)


@dataclass(frozen=True)
class NodeGroup:
    """One step: the nodes it runs (Kedro's topological order) and the groups it waits for."""

    name: str
    nodes: tuple[str, ...]
    parents: tuple[str, ...]
    inputs: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Crossing:
    """A dataset written by one group and read by others: it must be persisted on shared storage."""

    dataset: str
    producer: str
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class Grouping:
    """Groups in a deterministic topological order and the datasets that cross between them."""

    groups: tuple[NodeGroup, ...]
    crossings: tuple[Crossing, ...]

    @property
    def names(self) -> list[str]:
        """Group names, parents before children."""
        return [group.name for group in self.groups]

    def group(self, name: str) -> NodeGroup:
        """The group called ``name``."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def leaves(self) -> list[str]:
        """Groups no other group waits for."""
        waited_for = {parent for group in self.groups for parent in group.parents}
        return [name for name in self.names if name not in waited_for]


def assign_groups(
    nodes: Iterable[Node], config: GroupingConfig, registered: Mapping[str, Pipeline] | None = None
) -> dict[str, str]:
    """Node name -> group name; ``registered`` are the project's pipelines that ``grouping.pipelines`` names.

    Raises:
        DeployError: naming every node whose tags map it to more than one group and every pipeline in
            ``grouping.pipelines`` that is not registered.
    """
    registered = registered or {}
    assignment: dict[str, str] = {}
    problems: list[str] = [
        f"grouping.pipelines names pipeline '{name}', which is not registered"
        for name in config.pipelines
        if name not in registered
    ]
    by_pipeline: dict[str, str] = {}
    for name, group in reversed(config.pipelines.items()):  # the first match wins
        for node in registered.get(name, Pipeline([])).nodes:
            by_pipeline[node.name] = group
    for node in nodes:
        if node.name in config.nodes:
            assignment[node.name] = config.nodes[node.name]
            continue
        tagged = sorted({config.tags[tag] for tag in node.tags if tag in config.tags})
        if len(tagged) > 1:
            problems.append(f"node '{node.name}' has tags that map it to several groups: {', '.join(tagged)}")
            continue
        if tagged:
            assignment[node.name] = tagged[0]
        elif config.by == "namespace" and node.namespace:
            assignment[node.name] = node.namespace.split(".")[0]
        elif not node.namespace and node.name in by_pipeline:
            assignment[node.name] = by_pipeline[node.name]
        else:
            assignment[node.name] = node.name
    if problems:
        raise DeployError(problems)
    return assignment


def group_pipeline(
    pipeline: Pipeline, config: GroupingConfig, registered: Mapping[str, Pipeline] | None = None
) -> Grouping:
    """Group ``pipeline``'s nodes; a group depends on another when one of its nodes does in the graph.

    Raises:
        DeployError: when tags are ambiguous, a pipeline in ``grouping.pipelines`` is unknown, or the
            grouping makes the step graph cyclic.
    """
    ordered = list(pipeline.nodes)  # Kedro's deterministic topological order
    assignment = assign_groups(ordered, config, registered)
    position = {node.name: index for index, node in enumerate(ordered)}

    members: dict[str, list[str]] = {}
    inputs: dict[str, set[str]] = {}
    for node in ordered:
        members.setdefault(assignment[node.name], []).append(node.name)
        inputs.setdefault(assignment[node.name], set()).update(node.inputs)
    parents: dict[str, set[str]] = {name: set() for name in members}
    for child, child_parents in pipeline.node_dependencies.items():
        for parent in child_parents:
            if assignment[parent.name] != assignment[child.name]:
                parents[assignment[child.name]].add(assignment[parent.name])

    first_seen = {name: position[nodes[0]] for name, nodes in members.items()}
    order = _topological(parents, first_seen)
    groups = tuple(
        NodeGroup(
            name=name,
            nodes=tuple(members[name]),
            parents=tuple(sorted(parents[name], key=first_seen.__getitem__)),
            inputs=frozenset(inputs[name]),
        )
        for name in order
    )
    return Grouping(groups=groups, crossings=_crossings(ordered, assignment))


def _topological(parents: Mapping[str, set[str]], rank: Mapping[str, int]) -> list[str]:
    """Kahn's algorithm; among ready groups the one whose first node comes first in Kedro's order."""
    waiting = {name: set(deps) for name, deps in parents.items()}
    children: dict[str, set[str]] = {name: set() for name in parents}
    for name, deps in parents.items():
        for dep in deps:
            children[dep].add(name)
    ready = [(rank[name], name) for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child].discard(name)
            if not waiting[child]:
                heapq.heappush(ready, (rank[child], child))
    if len(order) < len(parents):
        stuck = sorted(set(parents) - set(order), key=rank.__getitem__)
        raise DeployError(
            [
                f"the node grouping makes a cycle between groups {', '.join(stuck)}: put the nodes between "
                "them into one group (grouping.nodes / grouping.tags in kubeflow.yml) or group by node"
            ]
        )
    return order


def _crossings(ordered: list[Node], assignment: Mapping[str, str]) -> tuple[Crossing, ...]:
    producer: dict[str, str] = {}
    for node in ordered:
        for output in node.outputs:
            producer[output] = assignment[node.name]
    consumers: dict[str, set[str]] = {}
    for node in ordered:
        for dataset in node.inputs:
            if is_parameter(dataset) or dataset not in producer:
                continue
            if producer[dataset] != assignment[node.name]:
                consumers.setdefault(dataset, set()).add(assignment[node.name])
    return tuple(
        Crossing(dataset=dataset, producer=producer[dataset], consumers=tuple(sorted(groups)))
        for dataset, groups in sorted(consumers.items())
    )
