#!/bin/sh
# The benchmark's trivial exec agent: reads the task, answers a constant result.
cat >/dev/null
echo '{"ok":true}'
