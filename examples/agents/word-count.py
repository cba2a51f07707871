#!/usr/bin/env python3
"""An example stdio agent for agentmesh (stdio agent protocol v1, docs/agent-protocol.md).

Standard library only, Python 3.8 or newer. Capabilities:

- ``wordcount``: counts the words, lines and characters of ``payload.text`` (a string) and
  answers ``{"words": n, "lines": n, "characters": n}``, reporting progress at 0, 50 and 100.
- ``echo`` (a task whose type or capabilities say ``echo``): answers ``{"echo": payload}``.

For either, ``payload.sleepMs`` (a number) makes the task wait that long first, in small steps
that notice a cancel at once, and ``payload.fail`` (a string) makes it fail with code BAD_INPUT.

Every task runs in its own thread, so several run at once; one lock keeps each message on its
own line of stdout. Anything the agent wants to say for people goes to stderr (the node keeps it
as the agent's log). The agent exits when stdin closes.

Try it by hand:

    printf '%s\\n' '{"type":"hello","protocol":1,"agent":{"id":"a","name":"wc","capabilities":[],"concurrency":4},"node":"n"}' \\
      '{"type":"task","task":{"id":"t1","type":"wordcount","title":"","payload":{"text":"a b c"},"capabilities":["wordcount"],"attempt":1,"deadline":null}}' \\
      | ./word-count.py
"""

import json
import sys
import threading
import time

PROTOCOL_VERSION = 1
CAPABILITIES = ["wordcount", "echo"]
# How long one wait step may be; a cancel interrupts it at once anyway (threading.Event.wait).
SLEEP_STEP_S = 0.05

_write_lock = threading.Lock()
_tasks_lock = threading.Lock()
# Running task id -> the Event that is set when the node cancels it (or stdin closes).
_tasks = {}


class TaskError(Exception):
    def __init__(self, code, message, retryable=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Cancelled(Exception):
    pass


def send(message):
    """Writes one message as one line; the lock keeps lines from different threads whole."""
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _write_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass  # the node is gone; nobody is left to read the answer


def log_stderr(text):
    with _write_lock:
        sys.stderr.write("word-count: %s\n" % text)
        sys.stderr.flush()


def wait(ms, cancelled):
    """Sleeps ms milliseconds unless the task is cancelled first."""
    end = time.monotonic() + ms / 1000.0
    while True:
        if cancelled.is_set():
            raise Cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        cancelled.wait(min(left, SLEEP_STEP_S))


def run(task, cancelled):
    task_id = task["id"]
    payload = task.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    fail = payload.get("fail")
    if isinstance(fail, str):
        raise TaskError("BAD_INPUT", fail, retryable=False)
    sleep_ms = payload.get("sleepMs", 0)
    if isinstance(sleep_ms, bool) or not isinstance(sleep_ms, (int, float)) or sleep_ms < 0:
        raise TaskError("BAD_INPUT", "payload.sleepMs must be a non-negative number", retryable=False)

    echo = task.get("type") == "echo" or "echo" in task.get("capabilities", [])
    text = payload.get("text")
    if not echo and not isinstance(text, str):
        raise TaskError("BAD_INPUT", "payload.text must be a string", retryable=False)

    send({"type": "progress", "id": task_id, "progress": 0, "message": "starting"})
    send({"type": "log", "id": task_id, "level": "info", "message": "attempt %s of %s" % (task.get("attempt"), task_id)})
    if sleep_ms > 0:
        wait(sleep_ms, cancelled)
    if echo:
        send({"type": "progress", "id": task_id, "progress": 100, "message": "done"})
        return {"echo": task.get("payload")}

    send({"type": "progress", "id": task_id, "progress": 50, "message": "counting"})
    counts = {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}
    send({"type": "progress", "id": task_id, "progress": 100, "message": "done"})
    return counts


def run_task(task, cancelled):
    task_id = task["id"]
    try:
        result = run(task, cancelled)
        if cancelled.is_set():
            raise Cancelled()
        send({"type": "result", "id": task_id, "result": result})
    except Cancelled:
        send({"type": "error", "id": task_id, "code": "CANCELLED", "message": "cancelled", "retryable": False})
    except TaskError as e:
        error = {"type": "error", "id": task_id, "code": e.code, "message": e.message}
        if e.retryable is not None:
            error["retryable"] = e.retryable
        send(error)
    except Exception as e:  # a bug here must fail the task, not hang it
        send({"type": "error", "id": task_id, "code": "AGENT_ERROR", "message": "%s: %s" % (type(e).__name__, e)})
    finally:
        with _tasks_lock:
            _tasks.pop(task_id, None)


def start_task(task):
    if not isinstance(task, dict) or not isinstance(task.get("id"), str) or not task["id"]:
        log_stderr("ignoring a task without an id")
        return
    task_id = task["id"]
    cancelled = threading.Event()
    with _tasks_lock:
        if task_id in _tasks:
            log_stderr("task %s is already running; duplicate ignored" % task_id)
            return
        _tasks[task_id] = cancelled
    threading.Thread(target=run_task, args=(task, cancelled), name="task-" + task_id, daemon=True).start()


def handle(message):
    kind = message.get("type")
    if kind == "hello":
        if message.get("protocol") != PROTOCOL_VERSION:
            log_stderr("the node speaks protocol %r" % message.get("protocol"))
        send({"type": "ready", "protocol": PROTOCOL_VERSION, "capabilities": CAPABILITIES})
    elif kind == "task":
        start_task(message.get("task"))
    elif kind == "cancel":
        with _tasks_lock:
            cancelled = _tasks.get(message.get("id"))
        if cancelled is not None:  # else the task has already been answered
            cancelled.set()
    elif kind == "ping":
        seq = message.get("seq")
        if isinstance(seq, (int, float)) and not isinstance(seq, bool):
            send({"type": "pong", "seq": seq})
        else:
            log_stderr("ignoring a ping without a numeric seq")
    elif kind == "tool_result":
        pass  # this agent makes no tool calls
    else:
        log_stderr("ignoring a message of type %r" % kind)


def main():
    stdin = open(sys.stdin.fileno(), "r", encoding="utf-8", errors="replace", newline="\n", closefd=False)
    while True:
        line = stdin.readline()
        if line == "":
            break  # stdin closed: the node is done with this agent
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            log_stderr("ignoring a line that is not JSON: %s" % line[:200].rstrip())
            continue
        if isinstance(message, dict):
            handle(message)
        else:
            log_stderr("ignoring a line that is not a JSON object")
    # Stop the tasks still running, give them a moment to answer, then leave.
    with _tasks_lock:
        running = list(_tasks.values())
    for cancelled in running:
        cancelled.set()
    deadline = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
