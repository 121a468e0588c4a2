"""The graded exercises of EXERCISES.md: one module per exercise.

Each module defines ``exercise = Exercise(NAME, TITLE)`` and its checks
(see grader/README.md).  Dropping a module here is all it takes to add an
exercise: ``grader list`` and ``grader check`` find it.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..engine import Exercise

# The order of EXERCISES.md; an exercise not listed here comes after these.
ORDER = ("uts", "escape", "jail", "pid1", "veth", "userns", "container", "timens")


def all_exercises() -> dict[str, Exercise]:
    """Every exercise the grader knows, by name, in the order of EXERCISES.md."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        exercise = getattr(module, "exercise", None)
        if isinstance(exercise, Exercise):
            found[exercise.name] = exercise
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda item: (rank.get(item[0], len(ORDER)), item[0])))
