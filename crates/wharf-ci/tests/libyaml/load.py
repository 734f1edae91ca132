"""Reads a JSON list of YAML documents on stdin and prints, for each, what libyaml makes of it:
{"ok": <the document as JSON>} or {"error": "<libyaml's message>"}.

libyaml is the parser GitLab reads pipelines with (Ruby's Psych wraps it); PyYAML's CSafeLoader
drives the same C library. Used by tests/libyaml_differential.rs."""
import json
import sys

import yaml

if not yaml.__with_libyaml__:
    sys.exit("this PyYAML was built without libyaml: its pure-Python parser is not GitLab's")

results = []
for document in json.load(sys.stdin):
    try:
        results.append({"ok": yaml.load(document, Loader=yaml.CSafeLoader)})
    except yaml.YAMLError as error:
        results.append({"error": str(error).splitlines()[0]})
json.dump(results, sys.stdout)
