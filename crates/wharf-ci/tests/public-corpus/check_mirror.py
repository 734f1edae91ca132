#!/usr/bin/env python3
"""Checks the offline mirror of the public corpus' network includes (python3, stdlib only).

For every manifest entry with "status": "network" it reads the pipeline's .gitlab-ci.yml from
<owner>__<repo>/, finds its include: statements (a rough reading, not the real loader: enough for
the forms these files use) and checks that each one resolves, transitively, to a file that is
really there: local files in the entry's folder, everything else under _gitlab/ in the layout the
stand-in GitLab serves (see README.md). Component inputs are checked against the component's
spec:inputs (unknown names, missing required ones). Every mirrored file must be a real file
(not empty, not an HTML error page) and be listed in _gitlab/SOURCES.json.

Usage: python3 check_mirror.py [-v]      exit status 0 when everything resolves
"""

import fnmatch
import json
import os
import re
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
GITLAB = os.path.join(HERE, "_gitlab")
REF_KINDS = {"branch", "tag", "commit"}


class Unresolved(Exception):
    """A dependency that does not resolve to a mirrored file."""


# --- a rough reading of include: -------------------------------------------------------------


def strip_comment(line):
    """The line without a trailing # comment (a # inside quotes is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def unquote(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def flow_list(text):
    """[a, 'b'] -> ['a', 'b'] (flat lists of scalars only)."""
    inner = text.strip()[1:-1]
    return [unquote(x) for x in inner.split(",") if x.strip()]


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def split_key(text):
    """'key: value' -> (key, value); None when the text is not a mapping entry."""
    m = re.match(r"""^("[^"]*"|'[^']*'|[^\s'"\[{][^:]*?)\s*:(\s+(.*))?$""", text)
    if not m:
        return None
    return unquote(m.group(1)), (m.group(3) or "").strip()


def block_lines(lines, start, min_indent):
    """Lines from start while they are blank or indented at least min_indent."""
    out = []
    i = start
    while i < len(lines):
        line = lines[i]
        if line.strip() and indent_of(line) < min_indent:
            break
        out.append(line)
        i += 1
    return out


def parse_item_map(lines):
    """A mapping given as lines (first key at the smallest indent) -> {key: value}.
    Values: a scalar, a list of scalars (file:), or a dict of input names (inputs:)."""
    lines = [strip_comment(x) for x in lines]
    lines = [x for x in lines if x.strip()]
    if not lines:
        return {}
    key_indent = indent_of(lines[0])
    out = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if indent_of(line) != key_indent:
            i += 1
            continue
        kv = split_key(line.strip())
        i += 1
        if not kv:
            continue
        key, value = kv
        body = []
        # A block value: deeper lines, or (YAML allows it) "- " items at the key's own indent.
        while i < len(lines) and (
            indent_of(lines[i]) > key_indent
            or (indent_of(lines[i]) == key_indent and lines[i].lstrip().startswith("- "))
        ):
            body.append(lines[i])
            i += 1
        if value.startswith("["):
            out[key] = flow_list(value)
        elif value and value not in ("|", ">", "|-", ">-"):
            out[key] = unquote(value)
        elif key == "inputs":
            inner = [x for x in body if x.strip()]
            if inner:
                inner_indent = indent_of(inner[0])
                names = {}
                for x in inner:
                    if indent_of(x) == inner_indent:
                        kv2 = split_key(x.strip())
                        if kv2:
                            names[kv2[0]] = kv2[1]
                out[key] = names
            else:
                out[key] = {}
        elif body and body[0].lstrip().startswith("- "):
            out[key] = [unquote(x.lstrip()[2:]) for x in body if x.lstrip().startswith("- ")]
        else:
            out[key] = body
    return out


def includes_of(text):
    """The include: entries of a YAML file, each as a dict with one of local, remote, project,
    component, template (plus file, ref, inputs)."""
    lines = text.split("\n")
    items = []
    for n, raw in enumerate(lines):
        line = strip_comment(raw)
        if not re.match(r"^include\s*:", line):
            continue
        value = line.split(":", 1)[1].strip()
        if value.startswith("["):
            items.extend(flow_list(value))
            continue
        if value:
            items.append(unquote(value))
            continue
        # The block: indented lines, or "- " items at column 0.
        body = []
        for nxt in lines[n + 1 :]:
            s = strip_comment(nxt)
            if s.strip() and indent_of(s) == 0 and not s.startswith("- ") and s != "-":
                break
            body.append(s)
        body = [x for x in body if x.strip()]
        if not body:
            continue
        if not body[0].lstrip().startswith("-"):
            items.append(parse_item_map(body))  # include: with a single mapping
            continue
        item_indent = indent_of(body[0])
        current = None
        for s in body:
            if indent_of(s) == item_indent and s.lstrip().startswith("-"):
                if current is not None:
                    items.append(current)
                rest = s.lstrip()[1:]
                current = [" " * (item_indent + 1 + len(rest) - len(rest.lstrip())) + rest.lstrip()]
            elif current is not None:
                current.append(s)
        if current is not None:
            items.append(current)
    out = []
    for item in items:
        if isinstance(item, list):
            first = item[0].strip()
            if split_key(first) is None:
                item = unquote(first)
            else:
                item = parse_item_map(item)
        if isinstance(item, str):
            item = {"remote": item} if re.match(r"https?://", item) else {"local": item}
        if isinstance(item, dict) and item:
            out.append(item)
    return out


def spec_inputs(text):
    """spec:inputs of a component's header -> {name: has_default}; None without a spec."""
    lines = text.split("\n")
    try:
        start = next(i for i, x in enumerate(lines) if re.match(r"^spec\s*:", x))
    except StopIteration:
        return None
    spec = parse_item_map(block_lines(lines, start + 1, 1))
    inputs_block = spec.get("inputs")
    if not isinstance(inputs_block, dict):
        return {}
    # parse_item_map gives names only; look again for each name's default.
    names = {}
    body_start = next(
        i for i in range(start + 1, len(lines)) if re.match(r"^\s+inputs\s*:", lines[i])
    )
    body = block_lines(lines, body_start + 1, indent_of(lines[body_start]) + 1)
    body = [strip_comment(x) for x in body if strip_comment(x).strip()]
    name_indent = indent_of(body[0]) if body else 0
    current = None
    for x in body:
        if indent_of(x) == name_indent:
            kv = split_key(x.strip())
            current = kv[0] if kv else None
            if current:
                names[current] = False
        elif current and indent_of(x) > name_indent and re.match(r"^\s+default\s*:", x):
            names[current] = True
    return names


# --- the mirror -------------------------------------------------------------------------------


def is_real_file(path):
    """A mirrored file that is really YAML, not an empty body or an HTML error page."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        return f"unreadable: {err}"
    head = text.lstrip()[:200].lower()
    if not head:
        return "empty"
    if head.startswith("<") or "<!doctype html" in head or "<html" in head:
        return "an HTML page, not YAML"
    if not re.search(r"^[^\s#-][^\n]*:", text, re.M):
        return "no YAML mapping key"
    return None


class Mirror:
    def __init__(self):
        self.projects = {}  # (host, lower project path) -> (folder, refs.json)
        for host in sorted(os.listdir(GITLAB)):
            hostdir = os.path.join(GITLAB, host)
            if not os.path.isdir(hostdir) or host == "_remote":
                continue
            for root, _dirs, files in os.walk(hostdir):
                if "refs.json" in files:
                    project = os.path.relpath(root, hostdir)
                    with open(os.path.join(root, "refs.json")) as f:
                        self.projects[(host.lower(), project.lower())] = (root, json.load(f))

    def project(self, host, project):
        key = (host.lower(), project.strip("/").lower())
        if key not in self.projects:
            raise Unresolved(f"project {host}/{project} is not mirrored")
        return self.projects[key]

    def project_file(self, host, project, ref, path):
        folder, refs = self.project(host, project)
        ref = ref or refs["default_branch"]
        if ref not in refs["refs"]:
            raise Unresolved(f"{host}/{project}: ref {ref} is not in refs.json")
        file = os.path.join(folder, ref.replace("/", "%2F"), path.lstrip("/"))
        if not os.path.isfile(file):
            raise Unresolved(f"{host}/{project}@{ref}: no file {path}")
        return file, ("project", host, project, ref)

    def component(self, host, spec):
        m = re.fullmatch(r"([^/]+)/(.+)/([^/@]+)@(.+)", spec)
        if not m:
            raise Unresolved(f"component {spec}: not <host>/<project>/<name>@<version>")
        chost, project, name, version = m.groups()
        if chost.lower() != host.lower():
            raise Unresolved(f"component {spec}: host {chost} is not the instance's ({host})")
        _folder, refs = self.project(chost, project)
        ref = resolve_version(version, refs["refs"])
        if ref is None:
            raise Unresolved(f"component {spec}: no ref matches version {version}")
        for path in (f"templates/{name}.yml", f"templates/{name}/template.yml"):
            try:
                return self.project_file(chost, project, ref, path)
            except Unresolved:
                pass
        raise Unresolved(f"component {spec}: no templates/{name}.yml nor templates/{name}/template.yml at {ref}")

    def remote(self, url):
        u = urllib.parse.urlparse(url)
        if u.scheme != "https" or not u.netloc:
            raise Unresolved(f"remote {url}: not an https URL")
        m = re.fullmatch(r"/(.+?)(?:/-)?/raw/([^/]+)/(.+)", u.path)
        if m and (u.netloc.lower(), m.group(1).lower()) in self.projects:
            return self.project_file(u.netloc, m.group(1), urllib.parse.unquote(m.group(2)), m.group(3))
        file = os.path.join(GITLAB, "_remote", u.netloc, u.path.lstrip("/"))
        if not os.path.isfile(file):
            raise Unresolved(f"remote {url}: not mirrored (no _remote/{u.netloc}{u.path})")
        return file, ("remote",)

    def template(self, host, name):
        file = os.path.join(GITLAB, host, "_templates", name)
        if not os.path.isfile(file):
            raise Unresolved(f"template {name}: not mirrored for {host}")
        return file, ("template", host)


def version_key(ref):
    m = re.fullmatch(r"v?(\d+(?:\.\d+)*)(-.+)?", ref)
    if not m:
        return None
    return tuple(int(x) for x in m.group(1).split(".")), m.group(2) is not None


def resolve_version(version, refs):
    """A component version as GitLab reads it: a ref that exists, ~latest (the highest release
    tag), or a partial version (the highest release tag it prefixes)."""
    if version in refs:
        return version
    tags = [(version_key(r), r) for r, kind in refs.items() if kind == "tag"]
    releases = [(k[0], r) for k, r in tags if k and not k[1]]
    if version == "~latest":
        return max(releases)[1] if releases else None
    want = version_key(version)
    if not want or want[1]:
        return None
    matching = [(k, r) for k, r in releases if k[: len(want[0])] == want[0]]
    return max(matching)[1] if matching else None


def expand(text, variables):
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
        lambda m: variables.get(m.group(1), m.group(0)),
        text,
    )


def check_entry(entry, mirror, reached):
    """Every dependency of one entry, transitively; returns (dependencies, problems)."""
    folder = os.path.join(HERE, entry["repo"].replace("/", "__"))
    host = urllib.parse.urlparse(entry.get("gitlab_url", "")).netloc
    variables = entry.get("variables", {})
    problems, deps = [], set()
    if not host:
        return deps, ["no gitlab_url"]
    local_files = []
    for root, _dirs, files in os.walk(folder):
        local_files += [os.path.relpath(os.path.join(root, f), folder) for f in files]
    todo = [(os.path.join(folder, entry["path"]), ("local",), [entry["path"]])]
    seen = set()
    while todo:
        file, ctx, chain = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        if not os.path.isfile(file):
            problems.append(f"{' > '.join(chain)}: missing")
            continue
        if file.startswith(GITLAB):
            reached.add(os.path.relpath(file, GITLAB))
            bad = is_real_file(file)
            if bad:
                problems.append(f"{' > '.join(chain)}: {bad}")
        with open(file, encoding="utf-8") as f:
            text = f.read()
        for inc in includes_of(text):
            try:
                found = resolve_include(inc, ctx, host, variables, folder, local_files, mirror)
            except Unresolved as err:
                problems.append(f"{' > '.join(chain)}: {err}")
                continue
            for dep_file, dep_ctx, label in found:
                deps.add(label)
                todo.append((dep_file, dep_ctx, chain + [label]))
                if "component" in inc:
                    problems += check_inputs(inc, dep_file, chain + [label])
    return deps, problems


def resolve_include(inc, ctx, host, variables, folder, local_files, mirror):
    """[(file, context for its own local includes, label)] for one include entry."""
    if "local" in inc:
        path = expand(inc["local"], variables).lstrip("/")
        if ctx[0] == "project":
            _, phost, project, ref = ctx
            file, dctx = mirror.project_file(phost, project, ref, path)
            return [(file, dctx, f"{project}@{ref}:{path}")]
        if ctx[0] != "local":
            raise Unresolved(f"local {path} inside a {ctx[0]} include")
        if any(c in path for c in "*?["):
            hits = [p for p in local_files if fnmatch.fnmatchcase(p, path)]
            if not hits:
                raise Unresolved(f"local {path}: matches no file")
            return [(os.path.join(folder, p), ("local",), p) for p in sorted(hits)]
        return [(os.path.join(folder, path), ("local",), path)]
    if "project" in inc:
        files = inc.get("file") or []
        if isinstance(files, str):
            files = [files]
        if not files:
            raise Unresolved(f"project {inc['project']}: no file")
        ref = expand(inc["ref"], variables) if inc.get("ref") else None
        out = []
        for f in files:
            file, dctx = mirror.project_file(host, expand(inc["project"], variables), ref, expand(f, variables))
            out.append((file, dctx, f"{inc['project']}@{dctx[3]}:{f}"))
        return out
    if "component" in inc:
        spec = expand(inc["component"], variables)
        file, dctx = mirror.component(host, spec)
        return [(file, dctx, f"component {spec}")]
    if "remote" in inc:
        url = expand(inc["remote"], variables)
        if "$" in url:
            raise Unresolved(f"remote {url}: a variable the entry does not set")
        file, dctx = mirror.remote(url)
        return [(file, dctx, f"remote {url}")]
    if "template" in inc:
        file, dctx = mirror.template(host, inc["template"])
        return [(file, dctx, f"template {inc['template']}")]
    raise Unresolved(f"include {inc}: no local, remote, project, component nor template")


def check_inputs(inc, file, chain):
    with open(file, encoding="utf-8") as f:
        spec = spec_inputs(f.read())
    given = inc.get("inputs") or {}
    if spec is None:
        return [f"{' > '.join(chain)}: component has no spec:inputs header"] if given else []
    out = [f"{' > '.join(chain)}: unknown input {name}" for name in given if name not in spec]
    out += [
        f"{' > '.join(chain)}: required input {name} not given"
        for name, has_default in spec.items()
        if not has_default and name not in given
    ]
    return out


def check_mirror_files():
    """Every mirrored file is real and listed in SOURCES.json; every refs.json is coherent."""
    problems = []
    with open(os.path.join(GITLAB, "SOURCES.json")) as f:
        sources = json.load(f)
    on_disk = set()
    for root, _dirs, files in os.walk(GITLAB):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), GITLAB)
            if rel == "SOURCES.json" or name == "refs.json":
                continue
            on_disk.add(rel)
            bad = is_real_file(os.path.join(root, name))
            if bad:
                problems.append(f"_gitlab/{rel}: {bad}")
    for rel in sorted(on_disk - set(sources)):
        problems.append(f"_gitlab/{rel}: not in SOURCES.json")
    for rel in sorted(set(sources) - on_disk):
        problems.append(f"SOURCES.json lists _gitlab/{rel}, which is not there")
    for rel, src in sources.items():
        for key in ("repo", "commit", "path"):
            if not src.get(key):
                problems.append(f"SOURCES.json: _gitlab/{rel} has no {key}")
    for folder, refs in Mirror().projects.values():
        name = os.path.relpath(folder, GITLAB)
        kinds = refs.get("refs", {})
        if refs.get("default_branch") not in kinds:
            problems.append(f"{name}/refs.json: default_branch is not among its refs")
        for ref, kind in kinds.items():
            if kind not in REF_KINDS:
                problems.append(f"{name}/refs.json: {ref} is a {kind!r}, not one of {sorted(REF_KINDS)}")
            if kind == "commit" and not re.fullmatch(r"[0-9a-f]{40}", ref):
                problems.append(f"{name}/refs.json: commit {ref} is not 40 hex digits")
            if not os.path.isdir(os.path.join(folder, ref.replace("/", "%2F"))):
                problems.append(f"{name}/refs.json: no folder for ref {ref}")
        for sub in os.listdir(folder):
            if os.path.isdir(os.path.join(folder, sub)) and sub.replace("%2F", "/") not in kinds:
                problems.append(f"{name}/{sub}: a folder refs.json does not list")
    return problems, len(on_disk)


def main():
    verbose = "-v" in sys.argv[1:]
    with open(os.path.join(HERE, "manifest.json")) as f:
        manifest = json.load(f)
    mirror = Mirror()
    reached = set()
    passed, failed, all_deps = 0, 0, set()
    for entry in manifest:
        if entry["status"] != "network":
            continue
        deps, problems = check_entry(entry, mirror, reached)
        all_deps |= deps
        if problems:
            failed += 1
            print(f"FAIL {entry['repo']}")
            for p in problems:
                print(f"     {p}")
        else:
            passed += 1
            if verbose:
                print(f"ok   {entry['repo']}: {len(deps)} dependencies")
                for d in sorted(deps):
                    print(f"       {d}")
    file_problems, mirrored = check_mirror_files()
    for p in file_problems:
        print(f"FAIL {p}")
    by_status = {}
    for entry in manifest:
        by_status[entry["status"]] = by_status.get(entry["status"], 0) + 1
    print(
        f"network entries: {passed} resolve, {failed} do not; "
        f"{len(all_deps)} distinct dependencies; "
        f"{len(reached)} of {mirrored} mirrored files reached "
        f"(the rest: catalog tags kept for version resolution)"
    )
    print("manifest: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    loadable = by_status.get("offline", 0) + passed
    print(f"loadable offline (offline + network that resolve): {loadable} of {len(manifest)}")
    return 1 if failed or file_problems else 0


if __name__ == "__main__":
    sys.exit(main())
