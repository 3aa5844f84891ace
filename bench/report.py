"""docs/benchmarks.md from bench/results.json: each figure next to its target."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT

Json = dict[str, Any]
NOTES = ROOT / "bench" / "NOTES.md"


def ms(value: float | None) -> str:
    """Milliseconds, readable."""
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def pct3(p: Json) -> str:
    """p50 / p95 / p99 in ms."""
    if not p or not p.get("n"):
        return "—"
    return f"{ms(p['p50'])} / {ms(p['p95'])} / {ms(p['p99'])}"


def verdict(ok: bool) -> str:
    """Met or not."""
    return "**met**" if ok else "**missed**"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _bots(ack: Json) -> list[tuple[str, Json]]:
    """(label, bot results) pairs present in the ack section: the database and, when the run
    tried several, the number of `serve --workers`."""
    bots = [(k, v) for k, v in ack.items() if k.startswith("bot_")]
    several = len({v.get("workers", 1) for _, v in bots}) > 1

    def label(key: str, bot: Json) -> str:
        db = key.removeprefix("bot_").split("_w")[0]
        n = bot.get("workers", 1)
        return f"{db}, {n} worker{'s' if n > 1 else ''}" if several else db

    return [(label(k, v), v) for k, v in bots]


# Server CPU per request of each kind alone, including a click's delivery (issue 17).
CPU_TARGETS = {"status": 3.0, "list": 3.0, "approve": 10.0}


def summary(res: Json) -> list[str]:
    """The one table: figure, measured, target, verdict."""
    s = res["sections"]
    rows: list[list[Any]] = []
    if ack := s.get("ack"):
        floor = ack["floor"]
        for db, bot in _bots(ack):
            for mode, label in (("closed", "50 clients back to back"),
                                ("paced", "50 clients, paced")):
                if mode not in bot:
                    continue
                b, f = bot[mode]["all"], floor[mode]["all"]
                ratio = b["p99"] / f["p99"]
                rows.append([f"1 ack p99, {label} ({db})",
                             f"{ms(b['p99'])} ms = {ratio:.2f}× floor ({ms(f['p99'])} ms); "
                             f"{bot[mode]['throughput']:.0f} vs {floor[mode]['throughput']:.0f}"
                             " req/s", "≤ 1.2× floor and < 100 ms",
                             verdict(ratio <= 1.2 and b["p99"] < 100)])
        for db, bot in _bots(ack):
            kinds = bot.get("cost_per_kind", {})
            if kinds:
                rows.append([f"1 server CPU per request, each kind alone ({db})",
                             ", ".join(f"{k} {v['cpu_ms']:.1f}" for k, v in kinds.items())
                             + f" ms (floor {floor['closed'].get('cpu_ms_per_request', 0):.2f})",
                             ", ".join(f"{k} ≤ {t:.0f}" for k, t in CPU_TARGETS.items()) + " ms",
                             verdict(all(kinds[k]["cpu_ms"] <= t for k, t in CPU_TARGETS.items()
                                         if k in kinds))])
        for db, bot in _bots(ack):
            c = bot["click_to_channel_idle"]
            rows.append([f"2 click → channel p99, one click at a time ({db})",
                         f"{ms(c['p99'])} ms (p50 {ms(c['p50'])})", "< 150 ms",
                         verdict(c["p99"] < 150)])
            if "paced" in bot:
                c = bot["paced"]["click_to_channel"]
                rows.append([f"2 click → channel p99, during the paced load ({db})",
                             f"{ms(c['p99'])} ms (p50 {ms(c['p50'])})", "< 300 ms",
                             verdict(c["p99"] < 300)])
    if tr := s.get("transitions"):
        for db in ("postgres", "sqlite"):
            best = max((v for k, v in tr.items() if k.startswith(db + "_")),
                       key=lambda v: v["per_second"], default=None)
            if best:
                target = "≥ 300/s" if db == "postgres" else "(no target)"
                procs = f" in {best['processes']} processes" if "processes" in best else ""
                rows.append([f"3 transitions/s ({db}, {best['workers']} workers{procs})",
                             f"{best['per_second']:.0f}/s", target,
                             verdict(best["per_second"] >= 300) if db == "postgres" else ""])
    if gl := s.get("gitlab"):
        idle = all(c[k]["calls"] == 0 for c in gl["cells"] if c["deploys"] == 0
                   for k in ("cold", "warm", "steady"))
        steady = all(c["steady"]["calls"] <= c["active_projects"] for c in gl["cells"])
        extra = max(max(c[k]["calls"] for k in ("cold", "warm", "steady", "finish"))
                    - c["active_projects"] for c in gl["cells"])
        after = all(c["after"]["calls"] == 0 for c in gl["cells"])
        rows.append(["4 GitLab calls per poll cycle",
                     f"idle 0: {idle}; steady ≤ active projects: {steady}; at most "
                     f"+{extra} (pagination of ≥ 100 changed pipelines)",
                     "≤ active projects + constant, 0 idle",
                     verdict(idle and steady and after and extra <= 2)])
    if sl := s.get("slack"):
        hp, dc = sl["happy_path"], sl["with_double_click_and_looks"]
        rows.append(["5 Slack calls per release, request → close", f"{hp['total']}", "—", ""])
        rows.append(["5 chat.update that changes nothing",
                     f"{hp['identical_updates']} on the happy path, "
                     f"{dc['identical_updates']} with a double click and a refused click",
                     "0", verdict(hp["identical_updates"] == dc["identical_updates"] == 0)])
    if hi := s.get("history"):
        queries = ("status", "list_active", "list_mine_heavy_user", "list_mine_typical_user",
                   "list_all")
        for db in ("sqlite", "postgres"):
            for size, label in (("big", f"{hi['releases']:,} releases, {hi['audit_rows']:,} "
                                        "audit rows"), ("small", f"{hi.get('small', 0):,} "
                                                                 "releases")):
                got = hi.get(f"{db}_{size}")
                if not got:
                    continue
                worst = max(queries, key=lambda k: got[k]["p99"])
                rows.append([f"6 history DB part p99 ({db}, {label})",
                             f"status {ms(got['status']['p99'])}, list active "
                             f"{ms(got['list_active']['p99'])}, mine "
                             f"{ms(got['list_mine_heavy_user']['p99'])}, all "
                             f"{ms(got['list_all']['p99'])} ms (worst: {worst})", "< 20 ms",
                             verdict(got[worst]["p99"] < 20)])
    if ack := s.get("ack"):
        for db, bot in _bots(ack):
            peak = max(bot["closed"]["rss_after_load"]["VmRSS"],
                       bot["closed"]["rss_after_settle"]["VmRSS"])
            paced = bot.get("paced", {}).get("rss_after_settle", {}).get("VmRSS", 0)
            rows.append([f"7 RSS idle / after the paced run ({db})",
                         f"{bot['rss_idle']['VmRSS']:.0f} / {paced:.0f} MB", "< 150 MB",
                         verdict(max(paced, bot["rss_idle"]["VmRSS"]) < 150)])
            rows.append([f"7 RSS after the back-to-back run ({db})",
                         f"{peak:.0f} MB (peak {bot['closed']['rss_after_settle']['VmHWM']:.0f})",
                         "< 150 MB", verdict(peak < 150)])
            rows.append([f"7 start-up to healthy ({db})",
                         f"{bot['startup_fresh_db_s']:.2f} s fresh database (migrations), "
                         f"{bot['startup_migrated_db_s']:.2f} s migrated", "—", ""])
    return table(["figure", "measured", "target", "verdict"], rows)


def _after(after: Json) -> str:
    """How long after the load every answer was in, or that it was not when we stopped."""
    if after["all_answered_after_s"] is None:
        return f"not within {after['waited_s']:.0f} s"
    return f"{after['all_answered_after_s']:.1f} s"


def ack_details(ack: Json) -> list[str]:
    """Figure 1, 2 and 7 in full."""
    out = ["## 1. Ack latency, 2. click → channel, 7. footprint", "",
           f"{ack['clients']} clients; mix {ack['mix']} (10 % of the Approve clicks are double "
           f"clicks on a card already approved); back to back for {ack['duration_s']:.0f} s, "
           f"and paced (each client waits a random time, mean {ack['think_s']} s, between "
           f"requests) for {ack['paced_s']:.0f} s. The load generator, the server and the "
           "emulators are separate processes (the server: `releasebot serve --workers N`, its "
           "CPU counted over the parent and its workers). Latency is from sending the signed "
           "request to reading the HTTP answer (the ack), in ms.", ""]
    rows = []
    phases: list[tuple[str, Json]] = [("floor (bare Bolt, ack only)", ack["floor"])]
    phases += [(f"bot on {db}", bot) for db, bot in _bots(ack)]
    for name, data in phases:
        for mode in ("closed", "paced"):
            if mode not in data:
                continue
            p = data[mode]
            by = p["by_kind"]
            rows.append([name, mode, pct3(p["all"]), f"{p['throughput']:.0f}",
                         pct3(by.get("status", {})), pct3(by.get("list", {})),
                         pct3(by.get("approve", {})), f"{p.get('server_cpu_pct', 0):.0f} %",
                         f"{p['client_cpu_pct']:.0f} %", f"{p.get('machine_cpu_pct', 0):.0f} %"])
    out += table(["server", "load", "ack p50 / p95 / p99", "req/s", "status", "list",
                  "approve", "server CPU", "client CPU", "machine CPU (of 200 %)"], rows)
    costs = [f"floor {ack['floor']['closed'].get('cpu_ms_per_request', 0):.2f} ms (every kind)"]
    for db, bot in _bots(ack):
        kinds = bot.get("cost_per_kind", {})
        costs.append(f"bot on {db}: " + ", ".join(
            f"{k} {v['cpu_ms']:.1f} ms" for k, v in kinds.items()) +
            f" (idle: {bot.get('idle_cpu_pct', 0):.1f} % CPU)")
    out += ["Server CPU per request, each kind alone (paced, about 20 requests/s, until every "
            "answer is in; for a click this includes delivering the thread reply, the asks and "
            "the card redraw): " + "; ".join(costs) + ".", ""]
    out += ["What the person waits for after the ack: the private answer (response_url) and, "
            "for a click, the card redrawn in the channel. Requests still unanswered when the "
            "bench stopped waiting count as answered then (`≥`). Past its backlog the bot "
            "answers at once that it is busy and does nothing (counted as answered).", ""]
    rows = []
    for db, bot in _bots(ack):
        for mode in ("paced", "closed"):
            if mode not in bot:
                continue
            p = bot[mode]
            ans, c2c, after = p["answer"], p["click_to_channel"], p["after_load"]
            lower = "≥ " if ans["missing"] else ""
            rows.append([db, mode, f"{lower}{pct3(ans['all'])}", f"{ans['missing']}",
                         f"{ans['answered_during_load']} of {ans['all']['n']}",
                         f"{ans.get('told_busy', 0)}",
                         f"{'≥ ' if c2c['missing'] else ''}{ms(c2c.get('p50'))} / "
                         f"{ms(c2c.get('p99'))}",
                         f"{p['outbox_backlog_at_end']}",
                         _after(after)])
    out += table(["bot", "load", "answer p50 / p95 / p99", "unanswered at stop",
                  "answered during the load", "told to retry (busy)",
                  "click → card update p50 / p99",
                  "outbox rows pending at end", "all answered after the load"], rows)
    rows = []
    for db, bot in _bots(ack):
        c = bot["click_to_channel_idle"]
        rows.append([db, c["n"], f"{ms(c['p50'])} / {ms(c['p95'])} / {ms(c['p99'])}",
                     ms(c["max"]), pct3(c["ack"])])
    out += ["Click → channel with an idle server: one Approve click at a time; time from "
            "sending the click to the emulator receiving the card's `chat.update`.", ""]
    out += table(["bot", "clicks", "p50 / p95 / p99 ms", "max", "ack of those clicks"], rows)
    rows = [["floor", f"{ack['floor']['startup_s']:.2f} s", "—",
             f"{ack['floor']['rss_idle']['VmRSS']:.0f} MB",
             f"{ack['floor']['rss_after_load']['VmRSS']:.0f} MB", "—"]]
    for db, bot in _bots(ack):
        rows.append([f"bot on {db}", f"{bot['startup_fresh_db_s']:.2f} s",
                     f"{bot['startup_migrated_db_s']:.2f} s",
                     f"{bot['rss_idle']['VmRSS']:.0f} MB",
                     f"{bot['closed']['rss_after_load']['VmRSS']:.0f} MB",
                     f"{bot['closed']['rss_after_settle']['VmRSS']:.0f} MB "
                     f"(peak {bot['closed']['rss_after_settle']['VmHWM']:.0f})"])
    out += ["Footprint: start-up is from spawning `python -m bot serve` to the first 200 from "
            "`/healthz` (with workers: and every worker started); RSS is VmRSS from /proc, of "
            "the largest process (with workers: of the parent and each worker).", ""]
    out += table(["server", "start-up (fresh DB)", "start-up (migrated DB)", "RSS idle",
                  "RSS right after the back-to-back load", "RSS after settling"], rows)
    for db, bot in _bots(ack):
        stats = bot.get("slack_stats", {})
        out += [f"Slack traffic of the bot on {db} during the whole ack run: "
                f"{stats.get('calls')}; `chat.update` calls that changed nothing: "
                f"{stats.get('identical_updates')} of {stats.get('updates')}; server log "
                f"lines by level: {bot.get('server_log', {}).get('levels')}, commonest "
                f"warnings and errors: {bot.get('server_log', {}).get('top')}.", ""]
    return out


def transition_details(tr: Json) -> list[str]:
    """Figure 3 in full."""
    rows = []
    for key, v in tr.items():
        if key.startswith("_"):
            continue
        db = key.split("_", 1)[0]
        if "processes" in v:
            db = f"{db} ({v['processes']} processes)"
        rows.append([db, v["workers"], f"{v['per_second']:.0f}", v["transitions"],
                     v["audit_rows"], v["outbox_rows"], pct3(v["latency"]),
                     f"{v['cpu_ms_per_transition']:.1f}", f"{v['client_cpu_pct']:.0f} %",
                     v["statements_per_transition"], v["failed"] or "none"])
    return ["## 3. Transitions per second", "",
            "Workers walk fresh releases through request → attach_report → approve × 2 → "
            "tick (service functions, one transaction each, with audit and outbox rows).", "",
            *table(["database", "workers", "per s", "transitions", "audit rows",
                       "outbox rows", "latency p50 / p95 / p99 ms", "CPU ms each",
                       "process CPU", "SQL per transition", "failed"], rows)]


def gitlab_details(gl: Json) -> list[str]:
    """Figure 4 in full."""
    rows = [[c["deploys"], c["projects"], c["active_projects"],
             *(f"{c[k]['calls']}" for k in ("cold", "warm", "steady", "finish", "after")),
             f"{ms(c['steady']['ms'])} / {ms(c['finish']['ms'])}"] for c in gl["cells"]]
    return ["## 4. GitLab calls per poll cycle", "",
            "Cycles 30 s apart: cold (first), warm (30 s later, the one-minute overlap re-reads "
            "everything), steady (2.5 min in, nothing changed), finish (all pipelines "
            "succeeded), after (nothing active).", "",
            *table(["active deploys", "over projects", "projects with a deploy", "cold",
                       "warm", "steady", "finish", "after", "ms steady / finish"], rows)]


def slack_details(sl: Json) -> list[str]:
    """Figure 5 in full."""
    rows = [[name, v["total"], v["by_method"], v["answers_to_people"], v["channel_posts"],
             v["card_updates"], v["dms"], v["identical_updates"]] for name, v in sl.items()
            if not name.startswith("_")]
    return ["## 5. Slack calls per release", "",
            "A payments release (staging, then production) from `/release request` to "
            "`/release close` through the running app. The second walk adds a double click on "
            "Approve, `status`, `list` and a Deploy click by someone who may not deploy.", "",
            *table(["walk", "calls", "by method", "answers to people", "channel posts",
                       "card updates", "DMs", "updates that changed nothing"], rows)]


def history_details(hi: Json) -> list[str]:
    """Figure 6 in full."""
    keys = ["status", "list_active", "list_mine_heavy_user", "list_mine_typical_user",
            "list_all", "status_with_rendering", "list_with_rendering", "outbox_pass",
            "outbox_backlog", "active_deployments"]
    cols = [k for k in hi if k.endswith(("_small", "_big"))]
    rows = [[k] + [pct3(hi[c][k]) for c in cols] for k in keys]
    rows.append(["load time"] + [f"{hi[c]['load_s']:.1f} s" for c in cols])
    rows.append(["rows"] + [f"{sum(hi[c]['rows'].values()):,}" for c in cols])
    plans = [f"- {c}: `{hi[c].get('plans', {}).get('list_active', '')}`" for c in cols
             if hi[c].get("plans")]
    return ["## 6. History", "",
            f"p50 / p95 / p99 ms of the database part (and, for reference, with rendering) "
            f"with {hi['releases']:,} releases and {hi['audit_rows']:,} audit rows ('big') and "
            f"{hi.get('small', 1000):,} releases ('small'), 200 samples each. 'mine' is one "
            "person's releases: the heavy user files 10 % of all releases.", "",
            *table(["query", *cols], rows),
            *(["Plans of `list active` (the `/release list` default; on PostgreSQL the "
               "custom plan and the generic one a prepared statement may switch to after "
               "five runs):", "", *plans, ""] if plans else [])]


def _append(run: Json) -> Json:
    """The timing of the audit append (older runs timed `add_audit`)."""
    return run.get("append_audit") or run.get("add_audit") or {}


def audit_details(au: Json) -> list[str]:
    """Figure 8: what the chained audit trail costs."""
    rows = []
    for key, v in au.items():
        if key.startswith("_") or not isinstance(v, dict) or "chained" not in v:
            continue
        db, workers = key.split("_")
        chained, plain = v["chained"], v["plain"]
        rows.append([db, workers, f"{chained['per_second']:.0f}", f"{plain['per_second']:.0f}",
                     f"{v['cost_pct']:.0f} %", pct3(_append(chained)),
                     pct3(_append(plain)), f"{chained['cpu_ms_per_transition']:.1f} / "
                     f"{plain['cpu_ms_per_transition']:.1f}"])
    verify = [[db, f"{v['rows']:,}", f"{v['hash_only_s']:.2f} s", f"{v['verify_s']:.1f} s",
               f"{v['rows_per_s']:,.0f}", f"{v['command_s']:.1f} s"]
              for db in ("sqlite", "postgres") if (v := au.get(f"{db}_verify"))]
    seeded = [f"{db}: {v['audit_rows']:,} rows intact" for db in ("sqlite", "postgres")
              if (v := au.get(f"{db}_seeded"))]
    m = au.get("_machine") or {}
    where = (f"Measured {au.get('_date', '?')} on {m.get('nproc', '?')} × {m.get('cpu', '?')}, "
             f"code at {m.get('revision', '?')}, 1-minute load average "
             f"{au.get('_loadavg_before', [0])[0]:.1f} when it started. ")
    return ["## 8. The audit chain", "", where +
            f"Figure 3's walk for {au.get('seconds', 10)} s on fresh databases, as the bot "
            "runs (each audit row chained: on PostgreSQL an advisory lock held to commit, a "
            "read of the newest row, a sha256) and with the row appended plain. `append_audit` "
            "is the time a transaction spends writing its audit rows just before its commit, "
            "lock wait included (runs before it timed `add_audit`, which took the lock "
            "mid-transaction).", "",
            *table(["database", "workers", "per s chained", "per s plain", "cost",
                    "append_audit chained p50 / p95 / p99 ms", "append_audit plain",
                    "CPU ms each chained / plain"], rows), "",
            "`releasebot audit verify` over a bulk-loaded chained history (10 rows per "
            "release): hashing alone, `verify_chain` in process, and the command end to end "
            "(process start included).", "",
            *table(["database", "rows", "hashing only", "verify", "rows/s", "command"],
                   verify), "",
            "Databases written by `bench/seed.py` (two runs, the second continuing the "
            "chain) pass `audit verify`: " + "; ".join(seeded) + ".", ""]


def write_report(res: Json) -> str:
    """The whole markdown document."""
    m = res["machine"]
    s = res["sections"]
    out = ["# Benchmarks", "",
           f"Run {m['date']} on {m['nproc']} × {m['cpu']}, Python {m['python']}, PostgreSQL "
           f"{m['postgres']}, Linux {m['kernel']}, code at {m.get('revision', '?')}; all on "
           "loopback against the project's Slack and GitLab emulators. The sections took "
           f"{res['total_seconds']:.0f} s"
           f"{' (--quick: smoke numbers, not the figures)' if res.get('quick') else ''}. "
           "Re-run with `bench/run` (see bench/README.md); raw numbers in bench/results.json.",
           "", "Other work on the machine skews every figure. Before each section the run "
           "waits up to `--quiet-wait` s for the machine to be nearly idle. Per section "
           "(finished at): machine CPU busy (of 200 %) when it started / 1-minute load average: "
           + ", ".join(f"{k} ({v.get('_date', m['date'])}) "
                       f"{v.get('_machine_busy_pct_before', 0):.0f} % / "
                       f"{v['_loadavg_before'][0]:.2f}" for k, v in s.items()) + ".", "",
           "## Summary", ""]
    out += summary(res)
    if "ack" in s:
        out += ack_details(s["ack"])
    if "transitions" in s:
        out += transition_details(s["transitions"])
    if "gitlab" in s:
        out += gitlab_details(s["gitlab"])
    if "slack" in s:
        out += slack_details(s["slack"])
    if "history" in s:
        out += history_details(s["history"])
    if "audit" in s:
        out += audit_details(s["audit"])
    if NOTES.exists():
        out += ["", NOTES.read_text().strip(), ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results.json"
    sys.stdout.write(write_report(json.loads(source.read_text())))
