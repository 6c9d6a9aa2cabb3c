"""Families: every FAKE derives from a REAL original; a family is that original and all its fakes."""
from __future__ import annotations

from common.problems import Problems

from .metadata import Entry


def assign_families(entries: dict[str, Entry], problems: Problems) -> dict[str, str]:
    """Map each video to its family, named by the REAL video it derives from (a REAL is its own family).

    Families are the connected components of the video -> original links, so chains (an original that is
    itself FAKE) and cycles still give one family. A FAKE whose original is not listed groups with the
    other fakes of that original, under the original's name.
    """
    parent_of: dict[str, str] = {}
    for video, e in entries.items():
        if e.label == 1 and e.original is None:
            problems.add("FAKE videos without an original (own family)", video)
        if e.original is None or e.original == video:
            continue
        if e.label == 0:
            problems.add("REAL videos with an original set (ignored)", video)
            continue
        parent_of[video] = e.original
        listed = entries.get(e.original)
        if listed is None:
            problems.add("FAKE videos whose original is not listed", f"{video} <- {e.original}")
        elif listed.label == 1:
            problems.add("originals that are themselves FAKE (chain followed)", f"{video} <- {e.original}")
        elif listed.label is None:
            problems.add("FAKE videos whose original has no label (the original stays unlabeled)",
                         f"{video} <- {e.original}")

    # union-find over the links; the representative is the root of the chain (min name inside a cycle)
    rep: dict[str, str] = {}

    def find(x: str) -> str:
        rep.setdefault(x, x)
        while rep[x] != x:
            rep[x] = rep[rep[x]]
            x = rep[x]
        return x

    for child, parent in parent_of.items():
        a, b = find(child), find(parent)
        if a != b:
            rep[a] = b
    members: dict[str, list[str]] = {}
    for video in entries:
        members.setdefault(find(video), []).append(video)
    family: dict[str, str] = {}
    for group in members.values():
        roots = [v for v in group if v not in parent_of]
        external = {parent_of[v] for v in group if parent_of.get(v) not in entries and v in parent_of}
        name = roots[0] if roots else min(external) if external else min(group)
        for v in group:
            family[v] = name
    return family
