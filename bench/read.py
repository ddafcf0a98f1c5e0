"""The measuring half of bench/read, which starts the server, seeds it and
passes what this needs in the environment: GHZ, ADDRESS, KEY, N, SERVER and
POSTMASTER (pids), PSQL, PGBENCH, SOCKET, PG_LOG, WORK, IDLE_CLIENT,
BENCH_READ_SECONDS and BENCH_READ_SOAK."""

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time

ENV = os.environ
SECONDS = int(ENV.get("BENCH_READ_SECONDS", "8"))
SOAK = ENV.get("BENCH_READ_SOAK", "1") != "0"
N = int(ENV["N"])
SERVER, POSTMASTER = int(ENV["SERVER"]), int(ENV["POSTMASTER"])
CONCURRENCIES = (8, 64)
IDLE_CONNECTIONS = 1000
# Calls whose statements are logged, to tell them from background work.
CAPTURES = 3
TICK = os.sysconf("SC_CLK_TCK")

USER_ID = '00000000-0000-4000-8000-{{printf "%012d" (randomInt 0 ' + str(N) + ")}}"
RPCS = {
    "GetUser": ("roster.v1.UserService.GetUser", '{"user_id":"' + USER_ID + '"}'),
    "GetUserAccess": (
        "roster.v1.UserService.GetUserAccess",
        '{"user_id":"' + USER_ID + '"}',
    ),
    "LookupUser": (
        "roster.v1.UserService.LookupUser",
        "{{$i := randomInt 0 " + str(N) + '}}{"email":"user.{{$i}}@example-{{mod $i 97}}.com"}',
    ),
    "BatchGetUsers": (
        "roster.v1.UserService.BatchGetUsers",
        # The first id outside the range: ghz fills in only templates that
        # have an action at their top level.
        '{"user_ids":["' + USER_ID + '"{{range until 99}},"' + USER_ID + '"{{end}}]}',
    ),
    # A surname and a number: selective, as a person searching types it.
    "ListUsers": (
        "roster.v1.UserService.ListUsers",
        '{"query":"{{index (list "silva" "souza" "lima" "costa") (randomInt 0 4)}} {{randomInt 1000 9999}}"}',
    ),
}
HEALTH = ("grpc.health.v1.Health.Check", "{}")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, from `state`."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def server_cpu():
    """utime + stime of the server: every thread, exited ones included."""
    fields = stat_fields(SERVER)
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_cpu():
    """CPU seconds of the whole cluster. Not /proc/stat minus the server and
    ghz: other builds share these cores and would count as PostgreSQL. Every
    PostgreSQL process (backend, pgbench's and the server's alike, and the
    auxiliaries) is a child of the postmaster, which reaps each one that
    exits, folding its time into its own cutime/cstime. So the postmaster's
    own and reaped children's time plus its live children's is the
    cluster's, and a backend exiting mid-run moves from one sum to the other
    with its time whole."""
    while True:
        reaped = stat_fields(POSTMASTER)
        total = sum(int(reaped[i]) for i in (11, 12, 13, 14))
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                child = stat_fields(entry)
            except OSError:
                continue  # exited since the listing: counted once reaped
            if int(child[1]) == POSTMASTER:
                total += int(child[11]) + int(child[12])
        # A child reaped during the scan would be missing from both sums
        # (pgbench's backends all exit at once): scan again.
        if stat_fields(POSTMASTER)[13:15] == reaped[13:15]:
            return total / TICK


def memory_kb(field):
    with open(f"/proc/{SERVER}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def ghz(call, data, concurrency, seconds=None, calls=None):
    # From a file: ghz checks that -d is JSON before it fills the template in.
    data_file = os.path.join(ENV["WORK"], call + ".json")
    with open(data_file, "w") as out:
        out.write(data)
    args = [ENV["GHZ"], "--insecure", "--format", "json", "--call", call, "--data-file", data_file]
    args += ["-c", str(concurrency)]
    if call.startswith("roster."):
        args += ["--proto", "proto/roster/v1/user_service.proto", "--import-paths", "proto"]
        args += ["--metadata", json.dumps({"authorization": "Bearer " + ENV["KEY"]})]
    # Health comes from the server's reflection: the repository has no proto of it.
    if seconds:
        # Calls in flight at the end are answered and counted, not cut off.
        args += ["-z", f"{seconds}s", "--duration-stop", "wait"]
    else:
        args += ["-n", str(calls)]
    args.append(ENV["ADDRESS"])
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0 or not run.stdout.startswith("{"):
        sys.exit(f"ghz {call} failed: {run.stderr}{run.stdout[:2000]}")
    report = json.loads(run.stdout)
    errors = sum((report.get("errorDistribution") or {}).values())
    if errors:
        sys.exit(f"{call}: {errors} of {report['count']} calls failed: {report['errorDistribution']}")
    return report


class RssSampler:
    """Samples VmRSS every `every` seconds while running."""

    def __init__(self, every):
        self.every, self.samples, self.stop = every, [], threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while True:
            self.samples.append(memory_kb("VmRSS"))
            if self.stop.wait(self.every):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def measure(name, call, data, concurrency):
    print(f"  {name} at {concurrency}...", file=sys.stderr, flush=True)
    ghz(call, data, concurrency, seconds=1)  # warms the pool and the caches
    began, statements = psql("select clock_timestamp()").strip(), transactions()
    server, postgres = server_cpu(), postgres_cpu()
    report = ghz(call, data, concurrency, seconds=SECONDS)
    server, postgres = server_cpu() - server, postgres_cpu() - postgres
    # At least one: a health check runs none (PostgreSQL flushes these
    # counts about once a second, so they are good to a second's worth).
    statements = max(transactions() - statements, 1)
    latency = {p["percentage"]: p["latency"] / 1e6 for p in report["latencyDistribution"]}
    count = report["count"]
    return {
        "rate": report["rps"],
        "p50": latency[50],
        "p99": latency[99],
        "server_us": server / count * 1e6,
        "postgres_us": postgres / count * 1e6,
        # The server's statements (each its own transaction), and the pool's
        # connections that ran any: what a paced pgbench run reproduces.
        "statements_per_second": statements / (report["total"] / 1e9),
        "postgres_us_per_statement": postgres / statements * 1e6,
        "connections": connections_used_since(began),
    }


def transactions():
    """Transactions of the database so far (the server's reads are one
    statement each, outside any transaction block)."""
    return int(psql("select xact_commit + xact_rollback from pg_stat_database where datname = current_database()"))


def connections_used_since(began):
    """The server's pool connections (no application name) that ran a
    statement since `began`; not those whose last query was sqlx's ping
    (an empty one) of a connection going back to its pool."""
    return int(
        psql(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and backend_type = 'client backend' and application_name = ''"
            f" and query <> '' and state_change >= '{began}'"
        )
    )


def psql(sql):
    return subprocess.run(
        shlex.split(ENV["PSQL"]), input=sql, check=True, capture_output=True, text=True
    ).stdout


ENTRY = re.compile(r"^bench-read\|(\d+)\|([^|]*)\|([A-Z]+):  (.*)$")
DEFAULT_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
PARAMETER = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")


def log_entries(text):
    """(pid, application, level, message) of each entry, its message with its
    continuation lines; entries logged with the default prefix are None."""
    entries = []
    for line in text.splitlines():
        match = ENTRY.match(line)
        if match:
            entries.append([match[1], match[2], match[3], match[4]])
        elif DEFAULT_PREFIX.match(line):
            entries.append(None)
        elif entries and entries[-1] is not None:
            entries[-1][3] += "\n" + line
    return entries


def statements_of_calls(names):
    """Runs calls of each RPC with every statement logged and returns, per
    RPC, the statements the server ran for one call with their parameters."""
    with open(ENV["PG_LOG"]) as log:
        log.seek(0, os.SEEK_END)
        offset = log.tell()
    # Each backend reloads the settings before the next message it reads, so
    # the pool's idle connections log the call's first statement too.
    psql(
        "alter system set log_statement = 'all';\n"
        "alter system set log_line_prefix = 'bench-read|%p|%a|';\n"
        "select pg_reload_conf();\n"
    )
    time.sleep(0.5)
    for name in names:
        for window in range(CAPTURES):
            psql(f"select 'bench-read begin {name} {window}';\n")
            ghz(*RPCS[name], 1, calls=1)
            psql(f"select 'bench-read end {name} {window}';\n")
    psql("alter system reset log_statement;\nalter system reset log_line_prefix;\nselect pg_reload_conf();\n")
    with open(ENV["PG_LOG"]) as log:
        log.seek(offset)
        windows = logged_windows(log_entries(log.read()))
    # The server's background work (sweeps) shares the pool: a call's
    # statements are those of every window.
    captured = {}
    for name in names:
        runs = [windows.get((name, str(window)), []) for window in range(CAPTURES)]
        captured[name] = [
            statement
            for statement in runs[0]
            if all(any(other["sql"] == statement["sql"] for other in run) for run in runs[1:])
        ]
    return captured


def logged_windows(entries):
    """The statements logged between each pair of psql's markers, with their
    parameters, by (RPC, window)."""
    windows, current, last_of_pid = {}, None, {}
    for entry in entries:
        if entry is None:
            continue
        pid, application, level, message = entry
        if application == "psql":
            marker = re.match(r"statement: select 'bench-read (begin|end) (\w+) (\d+)'", message)
            if marker:
                current = (marker[2], marker[3]) if marker[1] == "begin" else None
                if current:
                    windows[current] = []
            continue
        if current is None:
            continue
        if level == "LOG":
            query = re.match(r"(?:execute [^:]*|statement): (.*)$", message, re.S)
            if query and query[1].strip():  # an empty query is a connection's ping
                statement = {"sql": query[1], "parameters": {}}
                windows[current].append(statement)
                last_of_pid[pid] = statement
        elif level == "DETAIL" and message.startswith("parameters: ") and pid in last_of_pid:
            last_of_pid[pid]["parameters"] = {
                int(n): value for n, value in PARAMETER.findall(message)
            }
    return windows


def parameter_types(sql):
    """The types PostgreSQL gives the query's parameters, as it would for the server."""
    output = psql(
        # On a line of its own: the query may end in a comment.
        f"prepare bench_read_types as {sql}\n;\n"
        "select t from pg_prepared_statements, unnest(parameter_types::text[]) with ordinality u(t, n)"
        " where name = 'bench_read_types' order by n;\n"
    )
    return output.splitlines()


def replayable(statement):
    """The statement with its parameters written in as typed literals, which
    PostgreSQL folds when it plans, so it runs as the server's did."""
    sql, values = statement["sql"], statement["parameters"]
    if not values:
        return sql
    types = parameter_types(sql)
    return re.sub(
        r"\$(\d+)",
        lambda m: f"{values[int(m[1])]}::{types[int(m[1]) - 1]}",
        sql,
    )


def pgbench(script, concurrency, seconds, rate=None):
    args = [ENV["PGBENCH"], "-n", "-M", "prepared", "-h", ENV["SOCKET"], "-U", "roster"]
    args += ["-c", str(concurrency), "-j", str(min(2, concurrency)), "-T", str(seconds)]
    if rate:
        args += ["-R", f"{rate:.0f}"]
    args += ["-f", script, "roster"]
    postgres = postgres_cpu()
    output = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    postgres = postgres_cpu() - postgres
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if failed and int(failed[1]):
        sys.exit(f"pgbench {script}: {failed[1]} transactions failed:\n{output}")
    return postgres, int(re.search(r"number of transactions actually processed: (\d+)", output)[1])


def pgbench_floor(script, concurrency, rate=None):
    """PostgreSQL CPU µs per transaction, flat out or at `rate` transactions
    a second. pgbench opens its connections inside the window, whose
    backends' start-up would count too: a 1 s run's figures are taken from
    the long run's, cancelling it out."""
    paced = f" at {rate:,.0f}/s" if rate else ""
    print(f"  pgbench {os.path.basename(script)} over {concurrency}{paced}...", file=sys.stderr, flush=True)
    short_cpu, short_count = pgbench(script, concurrency, 1, rate)
    long_cpu, long_count = pgbench(script, concurrency, SECONDS + 1, rate)
    return (long_cpu - short_cpu) / (long_count - short_count) * 1e6


def one_line(sql, width=110):
    line = " ".join(sql.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def idle_connections():
    """VmRSS with the client's connections held idle, and per connection."""
    before = memory_kb("VmRSS")
    client = subprocess.Popen(
        [ENV["IDLE_CLIENT"], "http://" + ENV["ADDRESS"], str(IDLE_CONNECTIONS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = client.stdout.readline()
    if not ready.startswith("ready"):
        client.kill()
        sys.exit(f"idle_connections did not get ready: {ready!r}")
    time.sleep(2)  # let the server settle after the handshakes
    held = memory_kb("VmRSS")
    client.stdin.close()
    client.wait()
    return before, held


def main():
    started = time.monotonic()
    results, floors, paced, rss_under_load = {}, {}, {}, []
    print("measuring (ghz runs, then pgbench)...", file=sys.stderr)
    for concurrency in CONCURRENCIES:
        results[("Health/Check", concurrency)] = measure("Health/Check", *HEALTH, concurrency)
        for name, (call, data) in RPCS.items():
            if concurrency == max(CONCURRENCIES):
                with RssSampler(0.5) as sampler:
                    results[(name, concurrency)] = measure(name, call, data, concurrency)
                rss_under_load += sampler.samples
            else:
                results[(name, concurrency)] = measure(name, call, data, concurrency)
    hwm_under_load = memory_kb("VmHWM")

    statements = statements_of_calls(list(RPCS))
    for name in RPCS:
        if not statements.get(name):
            sys.exit(f"no statement of {name} found in PostgreSQL's log")
        script = os.path.join(ENV["WORK"], f"{name}.sql")
        with open(script, "w") as out:
            out.write("".join(replayable(s) + "\n;\n" for s in statements[name]))
        for concurrency in CONCURRENCIES:
            floors[(name, concurrency)] = pgbench_floor(script, concurrency)
            # The same statements at the rate the server sent them, over as
            # many connections: a backend that sleeps between statements is
            # woken for each, which flat out it never is.
            r = results[(name, concurrency)]
            rate = r["statements_per_second"] / len(statements[name])
            paced[(name, concurrency)] = pgbench_floor(script, max(1, r["connections"]), rate)

    # The steady load first: the idle connections' memory, kept by the
    # allocator after they close, would hide growth under it.
    soak = []
    if SOAK:
        print("  60 s of GetUser at 64...", file=sys.stderr, flush=True)
        with RssSampler(5) as sampler:
            ghz(*RPCS["GetUser"], max(CONCURRENCIES), seconds=60)
        soak = sampler.samples
    hwm_after_soak = memory_kb("VmHWM")
    print("  1,000 idle connections...", file=sys.stderr, flush=True)
    idle_before, idle_held = idle_connections()

    print()
    print("statements per call, from PostgreSQL's log (replayed by pgbench -M prepared):")
    for name in RPCS:
        print(f"  {name}: {len(statements[name])}")
        for statement in statements[name]:
            print(f"    {one_line(statement['sql'])}")
    print()
    print(
        f"{N} users; ghz {SECONDS} s per run over one connection; CPU per call from /proc;"
        " floor = health check's server µs + pgbench's PostgreSQL µs per transaction"
    )
    header = f"{'':>3} {'RPC':<14}{'calls/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'server µs':>11}{'pg µs':>8}"
    header += f"{'floor srv':>11}{'floor pg':>10}{'total/floor':>13}"
    print(header)
    for concurrency in CONCURRENCIES:
        health = results[("Health/Check", concurrency)]
        for name in ["Health/Check", *RPCS]:
            r = results[(name, concurrency)]
            line = f"{concurrency:>3} {name:<14}{r['rate']:>9,.0f}{r['p50']:>8.2f}{r['p99']:>8.2f}"
            line += f"{r['server_us']:>11.0f}{r['postgres_us']:>8.0f}"
            if name in RPCS:
                floor_pg = floors[(name, concurrency)]
                floor = health["server_us"] + floor_pg
                total = r["server_us"] + r["postgres_us"]
                line += f"{health['server_us']:>11.0f}{floor_pg:>10.0f}{total / floor:>12.1f}×"
            print(line)
    print()
    print(
        "PostgreSQL CPU µs per statement: in the server's run (a shared statement reads the keys of"
        " several calls); in pgbench's of one call's statements at the rate the server sent its"
        " statements, over as many connections (paced); in pgbench's flat out"
    )
    header = f"{'':>3} {'RPC':<14}{'statements/s':>13}{'calls each':>11}{'connections':>12}"
    print(header + f"{'server':>8}{'paced':>8}{'flat out':>10}")
    for concurrency in CONCURRENCIES:
        for name in RPCS:
            r, per_call = results[(name, concurrency)], len(statements[name])
            calls_each = r["rate"] * per_call / r["statements_per_second"]
            line = f"{concurrency:>3} {name:<14}{r['statements_per_second']:>13,.0f}{calls_each:>11.1f}"
            line += f"{r['connections']:>12}"
            line += f"{r['postgres_us_per_statement']:>8.0f}{paced[(name, concurrency)] / per_call:>8.0f}"
            line += f"{floors[(name, concurrency)] / per_call:>10.0f}"
            print(line)
    print()
    print(
        f"server memory: under the 64-concurrent load VmRSS max {mb(max(rss_under_load))},"
        f" VmHWM {mb(hwm_under_load)}"
    )
    if soak:
        print(
            f"  60 s of GetUser at 64, VmRSS every 5 s: first {mb(soak[0])}, last {mb(soak[-1])},"
            f" max {mb(max(soak))}; VmHWM {mb(hwm_after_soak)}"
        )
    else:
        print("  60 s run skipped (BENCH_READ_SOAK=0)")
    print(
        f"  {IDLE_CONNECTIONS:,} idle connections: VmRSS {mb(idle_before)} before, {mb(idle_held)} with them"
        f" ({(idle_held - idle_before) / IDLE_CONNECTIONS:.1f} kB each); VmHWM {mb(memory_kb('VmHWM'))}"
    )
    print(f"measured in {time.monotonic() - started:.0f} s")


main()
