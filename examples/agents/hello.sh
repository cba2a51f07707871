#!/bin/sh
# An example exec-mode agent for agentmesh (docs/agent-protocol.md, "Exec mode"): the node starts
# one process per task, writes the task JSON to stdin and closes it; whatever this prints on stdout
# is the result (JSON here), exit status 0 means success, and stderr lines are the task's log.
#
# Plain POSIX sh, no jq: the task id is the string after the first "id" key, found with sed (the
# first sed puts a line break where that key's value starts, the second takes the value from the
# next line). Good enough for an example, since the node writes the task's own id before its
# payload; a real agent should use a JSON parser.
set -eu

task=$(cat)
id=$(printf '%s\n' "$task" | tr '\n' ' ' | sed 's/"id"[[:space:]]*:[[:space:]]*"/\
/' | sed -n '2s/^\([^"\\]*\)".*/\1/p')
if [ -z "$id" ]; then
  echo "hello.sh: no task id in the input" >&2
  exit 2
fi
host=$(hostname 2>/dev/null || uname -n)

echo "hello.sh: greeting for task $id" >&2
printf '{"greeting":"hello from %s","task":"%s"}\n' "$host" "$id"
