#!/usr/bin/env python3
"""Write config/README.md, the key-by-key config reference, from the config schema.

    python tools/config_reference.py           # (re)write config/README.md
    python tools/config_reference.py --check   # exit 1 if config/README.md is not what this would write

Every key, its type or allowed values, default and description come from
workflow/schemas/config.schema.yaml, so the reference and the schema cannot drift; the paper and demo
columns are the values in config/config.yaml and config/demo.yaml. Standard library and PyYAML only.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Path("workflow/schemas/config.schema.yaml")
OUTPUT = Path("config/README.md")
# (column title, config file): a column is left out when its file is missing or unreadable.
CONFIGS = (("paper", Path("config/config.yaml")), ("demo", Path("config/demo.yaml")))
MISSING = object()


# ---------------------------------------------------------------- schema walking


def resolve(node, root, seen=()):
    """`node` with a local `$ref` (`#/$defs/x`, `#/definitions/x`, ...) followed; `(node, ref name)`.

    Unresolvable or cyclic references come back as they are, with the ref as the name.
    """
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not isinstance(ref, str):
        return node, None
    if ref in seen or not ref.startswith("#"):
        return node, ref
    target = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return node, ref
    merged = dict(target) if isinstance(target, dict) else {}
    merged.update({k: v for k, v in node.items() if k != "$ref"})  # siblings of $ref refine it
    inner, _ = resolve(merged, root, seen + (ref,))
    return inner, ref


def alternatives(node):
    """The subschemas of oneOf / anyOf / allOf, in that order."""
    out = []
    for key in ("oneOf", "anyOf", "allOf"):
        subs = node.get(key)
        if isinstance(subs, list):
            out += [s for s in subs if isinstance(s, dict)]
    return out


def child_properties(node, root, seen=()):
    """Ordered (name, subschema, required, seen refs) of an object schema, with those of its alternatives."""
    node, ref = resolve(node, root, seen)
    if ref:
        seen = seen + (ref,)
    if not isinstance(node, dict):
        return []
    required = node.get("required") if isinstance(node.get("required"), list) else []
    out, names = [], set()
    props = node.get("properties")
    if isinstance(props, dict):
        for name, sub in props.items():
            out.append((str(name), sub, name in required, seen))
            names.add(str(name))
    patterns = node.get("patternProperties")
    for pattern, sub in patterns.items() if isinstance(patterns, dict) else ():
        out.append((f"<key matching {pattern}>", sub, False, seen))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out.append(("<any key>", extra, False, seen))
    for alt in alternatives(node):
        for name, sub, req, s in child_properties(alt, root, seen):
            if name not in names:
                out.append((name, sub, req or name in required, s))
                names.add(name)
    return out


def item_schema(node, root, seen=()):
    """The schema of an array's items (the first, for tuple-style arrays), or None."""
    node, _ = resolve(node, root, seen)
    if not isinstance(node, dict):
        return None
    items = node.get("items")
    if isinstance(items, list):  # draft 4-7 tuple form
        items = items[0] if items else None
    if items is None and isinstance(node.get("prefixItems"), list) and node["prefixItems"]:
        items = node["prefixItems"][0]
    return items if isinstance(items, dict) else None


def walk(node, root, prefix="", seen=()):
    """Every key below an object schema, depth first in schema order: (dotted, schema, required, seen)."""
    for name, sub, required, s in child_properties(node, root, seen):
        dotted = f"{prefix}.{name}" if prefix else name
        yield dotted, sub, required, s
        yield from below(sub, root, dotted, s)


def below(node, root, dotted, seen=()):
    """The keys under the key `dotted`: its own, or those of its list items (as `dotted[].key`)."""
    resolved, ref = resolve(node, root, seen)
    if (ref and ref in seen) or dotted.count(".") > 30:  # a cycle: the key is listed, not descended into forever
        return
    seen = seen + ((ref,) if ref else ())
    yield from walk(resolved, root, dotted, seen)
    items = item_schema(resolved, root, seen)
    if items is not None:
        yield from walk(items, root, dotted + "[]", seen)


def all_keys(schema):
    """Dotted names of every key of the schema, in schema order."""
    return [dotted for dotted, *_ in walk(schema, schema)]


# ---------------------------------------------------------------- rendering


def value_text(value):
    """A config value written as in YAML flow style: true, 0.0005, [50, 100], {a: 1}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, default=str)


def code(text):
    """`text` as a code span that is safe inside a table cell."""
    text = str(text).replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text):
    """Schema prose made safe for one table cell: one line, no pipes, no raw HTML."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def bounds(node):
    """Numeric, length and size limits of a schema, as short phrases."""
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        limit = node.get(key)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            continue
        out.append(f"{sign} {value_text(limit)}")
    if isinstance(node.get("multipleOf"), (int, float)):
        out.append(f"a multiple of {value_text(node['multipleOf'])}")
    if node.get("minLength") == 1:
        out.append("non-empty")
    elif isinstance(node.get("minLength"), int):
        out.append(f"at least {node['minLength']} characters")
    if isinstance(node.get("maxLength"), int):
        out.append(f"at most {node['maxLength']} characters")
    if isinstance(node.get("pattern"), str):
        out.append(f"matching {code(node['pattern'])}")
    if isinstance(node.get("format"), str):
        out.append(f"format {node['format']}")
    if isinstance(node.get("minItems"), int):
        out.append(f"at least {node['minItems']} item" + ("s" if node["minItems"] != 1 else ""))
    if isinstance(node.get("maxItems"), int):
        out.append(f"at most {node['maxItems']} item" + ("s" if node["maxItems"] != 1 else ""))
    if node.get("uniqueItems") is True:
        out.append("no repeats")
    return out


def type_text(node, root, seen=(), depth=0):
    """What a key accepts: type, allowed values, bounds, item types, alternatives."""
    node, ref = resolve(node, root, seen)
    if ref:
        seen = seen + (ref,)
    if node is True or node == {}:
        return "any"
    if node is False:
        return "nothing (key not allowed)"
    if not isinstance(node, dict):
        return "any"
    if depth > 6:
        return "…"
    if "const" in node:
        return f"exactly {code(value_text(node['const']))}"
    if isinstance(node.get("enum"), list):
        values = ", ".join(code(value_text(v)) for v in node["enum"])
        return f"one of {values}"
    kinds = node.get("type")
    if isinstance(kinds, str):
        kinds = [kinds]
    elif isinstance(kinds, list):
        kinds = [k for k in kinds if isinstance(k, str)]
    else:  # no type: an object when it has properties and no alternatives say otherwise
        kinds = ["object"] if "properties" in node and not alternatives(node) else []
    parts = []
    for kind in kinds:
        if kind == "array":
            items = item_schema(node, root, seen)
            parts.append("list" if items is None else f"list of {type_text(items, root, seen, depth + 1)}")
        else:
            parts.append(kind)
    text = " or ".join(parts)
    limits = bounds(node)
    if limits:
        text = f"{text}, {', '.join(limits)}" if text else ", ".join(limits)
    for key, word in (("oneOf", "one of"), ("anyOf", "any of"), ("allOf", "all of")):
        subs = node.get(key)
        if isinstance(subs, list) and subs:
            alts = " \\| ".join(f"({type_text(s, root, seen, depth + 1)})" for s in subs)
            text = f"{text}; {word}: {alts}" if text else f"{word}: {alts}"
    if not text and ref:
        text = f"see {code(ref)}"
    return text or "any"


def config_value(config, dotted):
    """The value of a dotted key in a loaded config, or MISSING."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def load_configs(repo):
    """[(title, config dict)] for the config files that exist and parse."""
    out = []
    for title, rel in CONFIGS:
        try:
            config = yaml.safe_load((repo / rel).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(config, dict):
            out.append((title, config))
    return out


def is_section(node, root, seen):
    """True for a key with keys of its own (an object, or a list of objects), documented row by row below it."""
    return next(below(node, root, "", seen), None) is not None


def table(rows, root, configs):
    """A markdown table of (dotted, schema, required, seen) rows."""
    head = ["key", "type / allowed values", "default", "required"] + [t for t, _ in configs] + ["description"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dotted, sub, required, s in rows:
        node, _ = resolve(sub, root, s)
        node = node if isinstance(node, dict) else {}
        section = is_section(sub, root, s)
        kind = type_text(sub, root, s) + ("; its keys are listed below" if section else "")
        default = code(value_text(node["default"])) if "default" in node else ""
        cells = [code(dotted), kind, default, "yes" if required else "no"]
        for _, config in configs:
            value = config_value(config, dotted)
            cells.append("" if section else "–" if value is MISSING else code(value_text(value)))
        description = prose(node.get("description", ""))
        if node.get("deprecated") is True:
            description = f"(deprecated) {description}".strip()
        cells.append(description)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def enum_of(schema, dotted):
    """The enum list of a dotted key, or None."""
    node, seen = schema, ()
    for part in dotted.split("."):
        match = [(sub, s) for name, sub, _, s in child_properties(node, schema, seen) if name == part]
        if not match:
            return None
        node, seen = match[0]
    node, _ = resolve(node, schema, seen)
    return node.get("enum") if isinstance(node, dict) and isinstance(node.get("enum"), list) else None


def render(schema, configs=()):
    """The text of config/README.md for a loaded schema and loaded configs."""
    schema = schema if isinstance(schema, dict) else {}
    titles = [t for t, _ in configs]
    out = [
        "<!-- Generated by tools/config_reference.py from workflow/schemas/config.schema.yaml: "
        "do not edit by hand. -->",
        "",
        "# Configuration reference",
        "",
    ]
    if schema.get("description"):
        out += [prose(schema["description"]), ""]
    out += [
        "A study is one YAML file of the keys below. `config/config.yaml` is the paper's study (the default); "
        "`config/demo.yaml` is the small CPU demo that `make demo` runs. Run another study with "
        "`snakemake --configfile <file>`: that file is the whole study. Keys it leaves out take the defaults "
        "below, never the paper's values; the paper's config is read only when no `--configfile` is given. "
        "`--config key=value` overrides either. `snakemake -n` prints the config files it read, and "
        "`results/<study>/config.yaml` (shown on the index page) is the study as it runs, every default filled "
        "in: give it back with `--configfile` to run the same study.",
        "",
        "This file is generated from the descriptions in "
        "[`workflow/schemas/config.schema.yaml`](../workflow/schemas/config.schema.yaml) "
        "(JSON Schema) by `python tools/config_reference.py`. Do not edit it by hand: change the schema "
        "and run the script again. `python tools/config_reference.py --check` (part of the tests) fails "
        "when this file is out of date.",
        "",
    ]
    example = enum_of(schema, "model.name")
    check = (
        "The config is checked when Snakemake starts, before any job runs; a bad key or value stops it "
        "with the key's dotted name"
    )
    if example:
        check += (
            ", and the allowed values where there is a list, e.g. `invalid config: model.name: 'vgg' is "
            f"not allowed; allowed values: {', '.join(value_text(v) for v in example)}`."
        )
    else:
        check += "."
    out += [check, ""]
    columns = " and ".join(f"*{t}*" for t in titles)
    out += [
        "*Required* keys must be given whenever their section is; the others take their *default*, or are "
        "not used when they have none."
        + (
            f" The {columns} column{'s' if len(titles) > 1 else ''} show{'' if len(titles) > 1 else 's'} "
            "the value in "
            + " and ".join(f"`{rel.as_posix()}`" for t, rel in CONFIGS if t in titles)
            + " (– where the file leaves the key out)."
            if titles
            else ""
        ),
        "",
    ]

    top = child_properties(schema, schema)
    if top:
        out += ["## Top-level keys", ""]
        out += table(top, schema, configs)
        if schema.get("additionalProperties") is False:
            out += ["", "No other top-level keys are allowed."]
        out.append("")
    for name, sub, _, seen in top:
        if not is_section(sub, schema, seen):
            continue
        node, _ = resolve(sub, schema, seen)
        out += [f"## `{name}`", ""]
        if isinstance(node, dict) and node.get("description"):
            out += [prose(node["description"]), ""]
        out += table(list(below(sub, schema, name, seen)), schema, configs)
        if isinstance(node, dict) and node.get("additionalProperties") is False:
            out += ["", f"No other keys are allowed in `{name}`."]
        out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def warnings(schema):
    """Keys with no value inside a key's schema: usually a comma in a flow-style (`{...}`) description,
    which YAML reads as the end of the description and the start of a new key."""
    out = []
    for dotted, sub, _, seen in walk(schema, schema):
        node, _ = resolve(sub, schema, seen)
        if isinstance(node, dict):
            out += [
                f"{SCHEMA}: {dotted}: key {name!r} has no value (an unquoted comma in a {{...}} description?)"
                for name, value in node.items()
                if value is None
            ]
    return out


def generate(repo=REPO):
    """The text config/README.md should have, from the files in `repo`."""
    schema = yaml.safe_load((repo / SCHEMA).read_text())
    return render(schema, load_configs(repo))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {OUTPUT} is not current; write nothing")
    args = ap.parse_args(argv)
    try:
        text = generate(REPO)
        schema = yaml.safe_load((REPO / SCHEMA).read_text())
    except (OSError, yaml.YAMLError) as e:
        print(f"cannot read {SCHEMA}: {e}", file=sys.stderr)
        return 2
    for warning in warnings(schema):
        print(f"warning: {warning}", file=sys.stderr)
    target = REPO / OUTPUT
    if args.check:
        current = target.read_text() if target.exists() else None
        if current != text:
            print(f"{OUTPUT} is out of date with {SCHEMA}: run `python tools/config_reference.py`", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is current")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
