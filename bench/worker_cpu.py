"""A web worker's own CPU time per capture request, served in-process through tunixrt.wsgi.

    .venv/bin/python -m bench.worker_cpu batch 12      # 12 timed batches of 1,000 traces
    .venv/bin/python -m bench.worker_cpu single 1000   # 1,000 timed single captures

On a busy shared machine wall-clock rates and latencies swing more than any
change under test; the process's own CPU time (user + system, page faults
included) does not wait on anyone. The app runs with the settings of
bench.common against the bench database (BENCH_DB), in this process, without an
HTTP server; PostgreSQL's work is not counted. Compare two checkouts by running
each in turn, interleaved.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import common
from bench.gen_traces import Generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["batch", "single"])
    parser.add_argument("count", type=int, help="timed requests")
    args = parser.parse_args()
    if not common.db_exists():
        common.reset_db()
    token = common.bench_token()
    os.environ.update(common.app_env())
    from tunixrt.wsgi import application  # after the environment is set

    def post(path: str, body: bytes) -> str:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "application/json",
            "HTTP_AUTHORIZATION": f"Token {token}",
        }
        statuses: list[str] = []
        start_response: Callable[..., Any] = lambda status, headers, *exc: statuses.append(status)  # noqa: E731
        b"".join(application(environ, start_response))
        return statuses[0]

    base = 90_000_000 + int(time.time() * 1000) % 10_000_000 * 1000
    gen = Generator(seed=base)
    if args.mode == "batch":
        path, warmup = "/api/traces/batch", 2
        bodies = [orjson.dumps({"traces": [gen.trace(base + b * 1000 + i) for i in range(1000)]})
                  for b in range(args.count + warmup)]
    else:
        path, warmup = "/api/traces", 50
        bodies = [orjson.dumps(gen.trace(base + i)) for i in range(args.count + warmup)]
    for body in bodies[:warmup]:
        assert post(path, body).startswith("201"), path
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times: list[float] = []
    for body in bodies[warmup:]:
        cpu = time.process_time()
        status = post(path, body)
        times.append(time.process_time() - cpu)
        assert status.startswith("201"), status
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    times.sort()
    print(f"{args.mode}: worker CPU per request {sum(times) / len(times) * 1000:.2f} ms mean, "
          f"{times[len(times) // 2] * 1000:.2f} median, {times[0] * 1000:.2f} min; "
          f"{faults / args.count:.0f} minor page faults/request ({args.count} requests)")


if __name__ == "__main__":
    main()
