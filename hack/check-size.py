#!/usr/bin/env python3
"""Keeps the code readable: no function in non-test Rust code over 120 lines, and no Rust file over
800 lines unless it is listed below with the reason. Run by `make lint`.

Functions are found by their `fn` line and the matching closing brace (strings, chars and comments
are skipped); test code is every file under a `tests/` folder, `*_tests.rs`, and everything after
a `#[cfg(test)]` line.
"""
import pathlib
import re
import subprocess
import sys

MAX_FN = 120
MAX_FILE = 800
# Files allowed over MAX_FILE, each with why it is one idea.
ALLOWED_FILES = {}

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def code_only(line, state):
    """The line without strings, chars and comments; state carries block comments across lines."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out)
            state["block"], i = False, j + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        if c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def long_functions(path):
    lines = path.read_text().splitlines()
    state = {"block": False}
    found, stack, depth = [], [], 0
    for n, raw in enumerate(lines, 1):
        if raw.strip().startswith("#[cfg(test)]"):
            break
        line = code_only(raw, state)
        m = FN.match(line)
        if m and "{" in line[m.end():] or (m and not line.rstrip().endswith(";")):
            stack.append((m.group(6), n, depth))
        for c in line:
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                while stack and depth <= stack[-1][2]:
                    name, start, _ = stack.pop()
                    if n - start + 1 > MAX_FN:
                        found.append((name, start, n - start + 1))
        # A declaration without a body (trait method) never opens a brace.
        if stack and line.rstrip().endswith(";") and depth == stack[-1][2]:
            stack.pop()
    return found


def main():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.rs"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    bad = []
    for f in files:
        p = pathlib.Path(f)
        if not p.exists():
            continue
        n = len(p.read_text().splitlines())
        if n > MAX_FILE and f not in ALLOWED_FILES:
            bad.append(f"{f}: {n} lines (at most {MAX_FILE})")
        is_test = "tests" in p.parts or p.name.endswith("_tests.rs")
        if not is_test:
            for name, start, length in long_functions(p):
                bad.append(f"{f}:{start}: fn {name} is {length} lines (at most {MAX_FN})")
    for b in bad:
        print(f"check-size: {b}", file=sys.stderr)
    if bad:
        sys.exit(1)
    print(f"check-size: {len(files)} files; no function over {MAX_FN} lines, no file over {MAX_FILE}")


if __name__ == "__main__":
    main()
