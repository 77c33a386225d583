"""Print the requirements declared in pyproject.toml, one per line, for ``pip install -r``.

``python3 requirements.py pyproject.toml [EXTRA ...]`` prints ``project.dependencies`` plus the
named optional-dependency groups (self-references such as ``surrogate-serving[train]`` are
expanded). The images install these from pyproject.toml alone, before the source is copied, so
that editing the source does not invalidate the dependency layers. Standard library only: it runs
on the bare base image, before any virtual environment exists.
"""

from __future__ import annotations

import re
import sys
import tomllib

_EXTRAS = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*\[([^\]]*)\]\s*$")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """Base dependencies plus those of ``extras``, self-references expanded, duplicates dropped."""
    own_name = _normalise(project["name"])
    groups = project.get("optional-dependencies", {})
    result: list[str] = []
    pending = list(project.get("dependencies", []))
    seen_extras: set[str] = set()
    for extra in extras:
        pending.extend(_group(groups, extra, seen_extras))
    while pending:
        requirement = pending.pop(0)
        match = _EXTRAS.match(requirement)
        if match and _normalise(match.group(1)) == own_name:
            for extra in filter(None, (e.strip() for e in match.group(2).split(","))):
                pending.extend(_group(groups, extra, seen_extras))
        elif requirement not in result:
            result.append(requirement)
    return result


def _group(groups: dict, extra: str, seen: set[str]) -> list[str]:
    if extra not in groups:
        raise SystemExit(f"unknown extra {extra!r}; pyproject.toml defines {', '.join(groups)}")
    if extra in seen:
        return []
    seen.add(extra)
    return list(groups[extra])


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: requirements.py PYPROJECT [EXTRA ...]")
    with open(argv[0], "rb") as file:
        project = tomllib.load(file)["project"]
    print("\n".join(requirements(project, argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
