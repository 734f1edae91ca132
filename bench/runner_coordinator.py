#!/usr/bin/env python3
"""A stand-in GitLab coordinator for bench/runner.sh (loopback, plain HTTP, stdlib only).

`idle`: every job request gets 204 (no job): the runner's idle footprint.
`jobs N`: hands out N shell jobs (`script: [true]`, GIT_STRATEGY none), one per request, then
204; for each job it measures, on its own clock, the time from sending the job (201) to
receiving its final update (PUT with `output`), and prints the mean and the median in ms, the
most jobs it saw running at once, and the trace bytes it received.
$BENCH_SCRIPT replaces the job's script line (`true`).
"""
import os
import json
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1]
TOTAL = int(sys.argv[2]) if len(sys.argv) > 2 else 0
PORT_FILE = sys.argv[3] if len(sys.argv) > 3 else None
lock = threading.Lock()
given = {}
durations = []
next_id = [0]
running = [0, 0]  # now, most at once
trace_bytes = [0]
states = {}
SCRIPT = os.environ.get("BENCH_SCRIPT", "true")


def payload(job_id):
    return {
        "id": job_id,
        "token": f"bench-job-token-{job_id}",
        "job_info": {"name": "bench", "stage": "test", "project_id": 1, "project_full_path": "bench/project"},
        "git_info": {"repo_url": "http://127.0.0.1/none.git", "ref": "main", "sha": "0" * 40, "depth": 0},
        "runner_info": {"timeout": 600},
        "variables": [{"key": "GIT_STRATEGY", "value": "none", "public": True}],
        "steps": [{"name": "script", "script": [SCRIPT], "timeout": 600, "when": "on_success"}],
        "features": {"trace_sections": True},
    }


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):
        self.body()
        if self.path.startswith("/api/v4/jobs/request"):
            with lock:
                if MODE == "jobs" and next_id[0] < TOTAL:
                    next_id[0] += 1
                    job_id = next_id[0]
                    given[job_id] = time.monotonic()
                    running[0] += 1
                    running[1] = max(running[1], running[0])
                else:
                    job_id = None
            if job_id is None:
                self.answer(204, headers=[("X-GitLab-Last-Update", "bench")])
            else:
                self.answer(201, json.dumps(payload(job_id)).encode(), [("Content-Type", "application/json")])
        else:
            self.answer(404)

    def do_PATCH(self):
        received = len(self.body())
        with lock:
            trace_bytes[0] += received
        self.answer(202, headers=[("X-GitLab-Trace-Update-Interval", "3"), ("Job-Status", "running")])

    def do_PUT(self):
        update = json.loads(self.body() or b"{}")
        job_id = int(self.path.rsplit("/", 1)[-1])
        if "output" in update:
            with lock:
                durations.append((time.monotonic() - given[job_id]) * 1000)
                running[0] -= 1
                states[update.get("state")] = states.get(update.get("state"), 0) + 1
                done = len(durations) == TOTAL
            self.answer(200)
            if done:
                print(f"jobs={TOTAL} pickup-to-final-update mean={statistics.mean(durations):.1f} ms "
                      f"median={statistics.median(durations):.1f} ms at-once={running[1]} "
                      f"trace-bytes={trace_bytes[0]} states={states}", flush=True)
        else:
            self.answer(200)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if PORT_FILE:
    with open(PORT_FILE, "w") as f:
        f.write(str(server.server_address[1]))
server.serve_forever()
