#!/usr/bin/env python3
"""The settings tables of docs/CONFIG.md and the man pages, from the schema.

Each daemon prints the CONFIG_KEY table its --help is made from
(`BIN --print-schema`: tab-separated name, type, default, flag, yaml,
item_keys, help); this script writes that table into the committed files,
between marker lines, so the docs cannot drift from the code:

  docs/CONFIG.md     <!-- BEGIN generated: DAEMON settings ... -->  (Markdown)
  man/DAEMON.8       .\\" BEGIN generated: DAEMON settings           (roff)
  man/ztr.conf.5     the same, one block per daemon
  man/controller.8   also `controller help` (the CLI's commands)
  docs/CONTROLLER.md `controller help` again, in "The CLI"
  man/ztr-pki.1      the usage ztr-pki prints

  scripts/gen-docs.py BINDIR           rewrite the files (make docs)
  scripts/gen-docs.py --check BINDIR   exit 1 naming each file and key that
                                       differs (tests/docs_check.sh)
"""
import os
import re
import subprocess
import sys
import textwrap

# ZTR_DOCS_ROOT: another tree to check (tests/docs_check.sh's self-test).
ROOT = os.environ.get("ZTR_DOCS_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMONS = ("controller", "connector", "tunneler")
TYPE_WORDS = {
    "string": "string",
    "secret": "secret",
    "duration": "duration",
    "uint": "uint",
    "bool": "bool",
    "addr": "addr",
    "list": "list",
}


def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout


def schema(bindir, daemon):
    lines = run([os.path.join(bindir, daemon), "--print-schema"]).splitlines()
    header = lines[0].split("\t")
    if header != ["name", "type", "default", "flag", "yaml", "item_keys", "help"]:
        sys.exit(f"gen-docs: {daemon} --print-schema: unexpected header {lines[0]!r}")
    keys = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            sys.exit(f"gen-docs: {daemon} --print-schema: bad line {line!r}")
        keys.append(dict(zip(header, fields)))
    return keys


# ---- Markdown ---------------------------------------------------------------

def md_cell(text):
    return text.replace("|", "\\|")


def md_rows(keys):
    """(key name, row text) for each key: the check names the key."""
    rows = [(None, "| key (env) | YAML | flag | type | default | description |"),
            (None, "|---|---|---|---|---|---|")]
    for k in keys:
        flag = f"`{k['flag']}`" if k["flag"] else "none (a secret)"
        kind = TYPE_WORDS[k["type"]]
        if k["item_keys"]:
            kind += " of {" + ", ".join(k["item_keys"].split(",")) + "}"
        default = f"`{k['default']}`" if k["default"] else ""
        rows.append((k["name"], f"| `{k['name']}` | `{k['yaml']}` | {flag} | {md_cell(kind)} | "
                                f"{md_cell(default)} | {md_cell(k['help'])} |"))
    return rows


# ---- roff -------------------------------------------------------------------

def roff_text(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def roff_para(text):
    """Filled text, wrapped at 78 bytes (mandoc -T lint's style check)."""
    lines = textwrap.wrap(text, 72, break_long_words=False, break_on_hyphens=False)
    return "\n".join(roff_text(line) for line in lines)


def roff_rows(keys):
    rows = []
    for k in keys:
        names = f"\\fB{roff_text(k['name'])}\\fR, \\fB{roff_text(k['yaml'])}\\fR"
        if k["flag"]:
            names += f", \\fB{roff_text(k['flag'])}\\fR"
        kind = TYPE_WORDS[k["type"]]
        if k["item_keys"]:
            kind += " of {" + ", ".join(k["item_keys"].split(",")) + "}"
        help_text = k["help"] or "(no description)"
        if not help_text.endswith("."):
            help_text += "."
        facts = f"Type: \\fI{roff_text(kind)}\\fR."
        if k["default"]:
            facts += f" Default: \\fB{roff_text(k['default'])}\\fR."
        if k["type"] == "secret":
            facts += "\nA secret: environment or YAML only, never a flag; never logged."
        body = [".TP", names, roff_para(help_text), ".br", facts]
        rows.append((k["name"], "\n".join(body)))
    return rows


def md_cli(help_text):
    lines = help_text.rstrip("\n").splitlines()
    return [(None, "```")] + [(None, line) for line in lines] + [(None, "```")]


def roff_cli(help_text):
    rows = [(None, ".PP\n.nf\n.RS 4")]
    for line in help_text.rstrip("\n").splitlines():
        rows.append((None, roff_text(line)))
    rows.append((None, ".RE\n.fi"))
    return rows


# ---- blocks between markers -------------------------------------------------

def markers(path, what):
    if path.endswith(".md"):
        return (f"<!-- BEGIN generated: {what} (scripts/gen-docs.py; make docs) -->",
                f"<!-- END generated: {what} -->")
    return (f'.\\" BEGIN generated: {what} (scripts/gen-docs.py; make docs)',
            f'.\\" END generated: {what}')


def replace_block(path, text, what, rows, problems, check):
    begin, end = markers(path, what)
    lines = text.split("\n")
    try:
        b = lines.index(begin)
        e = lines.index(end, b)
    except ValueError:
        problems.append(f"{path}: no '{begin}' ... '{end}' block")
        return text
    want = "\n".join(r for _, r in rows).split("\n")
    have = lines[b + 1:e]
    if want != have and check:
        rel = os.path.relpath(path, ROOT)
        have_text = "\n".join(have)
        named = False
        for name, row in rows:
            if name is not None and row not in have_text:
                problems.append(f"{rel}: {what}: key {name} differs from the schema "
                                f"(or is missing): want {row.splitlines()[1] if row.startswith('.TP') else row}")
                named = True
        known = {n for n, _ in rows if n is not None}
        for line in have:
            match = re.match(r"^\| `([A-Z0-9_]+)` \||^\\fB([A-Z0-9_]+)\\fR", line)
            name = match and (match.group(1) or match.group(2))
            if name and name not in known:
                problems.append(f"{rel}: {what}: key {name} is not in the schema")
                named = True
        if not named:
            problems.append(f"{rel}: {what}: differs from what the binaries print (make docs)")
    return "\n".join(lines[:b + 1] + want + lines[e:])


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if len(args) != 1:
        sys.exit(__doc__)
    bindir = args[0]
    schemas = {d: schema(bindir, d) for d in DAEMONS}
    cli_help = run([os.path.join(bindir, "controller"), "help"])
    # ztr-pki prints its usage on stderr with exit 2 when given no command.
    pki = subprocess.run([os.path.join(bindir, "ztr-pki")], capture_output=True, text=True)
    pki_usage = "\n".join(pki.stderr.splitlines()[1:])
    targets = {
        "docs/CONFIG.md": [(f"{d} settings", md_rows(schemas[d])) for d in DAEMONS],
        "man/ztr.conf.5": [(f"{d} settings", roff_rows(schemas[d])) for d in DAEMONS],
    }
    for d in DAEMONS:
        targets[f"man/{d}.8"] = [(f"{d} settings", roff_rows(schemas[d]))]
    targets["man/controller.8"].append(("controller commands", roff_cli(cli_help)))
    targets["docs/CONTROLLER.md"] = [("controller commands", md_cli(cli_help))]
    targets["man/ztr-pki.1"] = [("ztr-pki usage", roff_cli(pki_usage))]
    problems = []
    for rel, blocks in targets.items():
        path = os.path.join(ROOT, rel)
        try:
            with open(path, encoding="utf-8") as f:
                old = f.read()
        except OSError as e:
            problems.append(f"{rel}: {e.strerror}")
            continue
        new = old
        for what, rows in blocks:
            new = replace_block(path, new, what, rows, problems, check)
        if not check and new != old:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"gen-docs: wrote {rel}")
    for p in problems:
        print(f"gen-docs: {p}", file=sys.stderr)
    if problems:
        if check:
            print("gen-docs: the committed docs differ from the schema: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
