"""List functions longer than a limit, counted in lines of code.

    python tools/function_lengths.py [--limit 60] [PATH ...]      # default: tilesr/

A function's lines of code are the lines from its ``def`` to its last line (decorators
not included; nested functions and classes count towards the function holding them)
that are not blank, not only a comment and not part of a docstring. Exits 1 when any
function is over the limit, so it can guard a CI step.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _code_lines(source: str, tree: ast.AST) -> set[int]:
    """Line numbers holding code: not blank, not only a comment, not in a docstring."""
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            continue
        if tok.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                lines.difference_update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    return lines


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, lines of code) of every function in ``path``."""
    source = path.read_text()
    tree = ast.parse(source)
    code = _code_lines(source, tree)

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                span = range(child.lineno, (child.end_lineno or child.lineno) + 1)
                name = f"{prefix}{child.name}"
                yield name, child.lineno, sum(1 for n in span if n in code)
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "tilesr"])
    parser.add_argument("--limit", type=int, default=60, help="most lines of code (default 60)")
    parser.add_argument("--all", action="store_true", help="list every function, longest first")
    args = parser.parse_args(argv)
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py"))))
    rows = [
        (n, f, name, line)
        for f in files
        for name, line, n in function_lengths(f)
        if args.all or n > args.limit
    ]
    for n, f, name, line in sorted(rows, key=lambda r: -r[0]):
        where = f.resolve().relative_to(ROOT) if f.resolve().is_relative_to(ROOT) else f
        print(f"{n:4d}  {where}:{line}  {name}")
    over = sum(1 for n, *_ in rows if n > args.limit)
    print(f"{over} function(s) over {args.limit} lines of code in {len(files)} file(s)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
