"""Every public function and method of the four apps says what it returns (`make check` runs this).

mypy does not check the body of a function without annotations, so a missing return type hides errors; this
fails listing each one. Run: python .ci/annotations.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

APPS = ("fleetweb", "foundation", "inventory", "notifications", "governance", "rollouts")


def missing(root: Path) -> list[str]:
    found = []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.parse(path.read_text()).body:
                functions = [node] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else [
                    n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                ] if isinstance(node, ast.ClassDef) else []
                found += [f"{path.relative_to(root)}:{f.lineno}: {f.name} has no return type" for f in functions
                          if not f.name.startswith("_") and f.returns is None]
    return found


if __name__ == "__main__":
    problems = missing(Path(__file__).resolve().parent.parent)
    print("\n".join(problems) or "every public function has a return type")
    sys.exit(1 if problems else 0)
