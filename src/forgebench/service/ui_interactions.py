"""UI interactions in a real browser: the service's search page in headless Chromium.

Why: the original promised "UI interactions under 50 ms" with no UI and no browser. Here
the real service (``service.server``) serves ``/ui`` (``service.ui_page``), Debian's
Chromium loads it (``service.headless_chromium``), and WebDriver types seeded BoolQ
questions into the search box key by key and presses Enter. Every figure is taken inside
the page (``performance.now()`` and the Event Timing API), so the WebDriver round trip is
in none of them; the driver waits for each interaction's record before the next key, so
interactions do not overlap.

Per repetition (the unit of replication: a fresh navigation of the page, HTTP cache off):

* ``navigation``: ``dom_interactive``, ``dom_content_loaded`` (its end), ``load_event_end``
  (PerformanceNavigationTiming, relative to its ``startTime``) and
  ``first_contentful_paint``, in seconds;
* ``keystroke`` (client-side only: the input handler updates the page): ``input_to_paint``
  from the keydown's ``event.timeStamp`` to a task posted from the next animation frame
  after the DOM update (input to next paint, approximated), and ``input_to_handled`` (to
  the end of the handler: input delay plus processing);
* ``search`` (Enter: the fetch of ``/api/v1/rag`` included): ``input_to_paint`` from the
  Enter keydown to the frame after the results are in the DOM, ``fetch_time``, and
  ``input_to_handled``; the rendered documents must equal the API's answer to the same
  query fetched here (else ``mismatch``);
* ``event_timing_duration`` (both cases): the browser's own Event Timing ``duration`` of
  the keydown (rounded to 8 ms; only events of 16 ms or more are reported, so these rows
  are the slow tail, not a sample) and ``event_timing_reported_share`` per repetition. For
  a search it ends at the paint after the handler ("Searching…"), not at the results.

A failed interaction is a row with its status: ``timeout`` (no record in ``timeout_s``),
``error:JSError`` (an uncaught page error meanwhile), ``error:SearchFailed`` (the fetch or
the server failed), ``error:NoResults`` (nothing rendered), ``mismatch``, or a WebDriver
error; after a WebDriver error the repetition's remaining interactions are
``error:Abandoned`` rows. The first ``warmup_repetitions`` repetitions are flagged warmup.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for
from forgebench.service.headless_chromium import chromium
from forgebench.service.scenarios import _get_json, server_settings
from forgebench.service.server import ServiceAddress, service_process

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "ui_interactions"
KEY = "suites.service.benchmarks.ui_interactions"
#: Event Timing's smallest ``durationThreshold``: shorter events are not reported.
EVENT_TIMING_THRESHOLD_MS = 16

log = logging.getLogger(__name__)

#: Interaction ``id``'s record (null after ``ms``) and the count of page errors so far.
_WAIT = """
const done = arguments[arguments.length - 1];
window.__fb.waitFor(arguments[0], arguments[1]).then(
  r => done({record: r, errors: window.__fb.errors.length}));
"""
#: Navigation timing once the load event has ended and the first contentful paint is in
#: (or after ``arguments[0]`` ms without it: null).
_NAVIGATION = """
const done = arguments[arguments.length - 1], limit = arguments[0], t0 = performance.now();
const read = () => {
  const n = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  if ((!n || n.loadEventEnd <= 0 || !fcp) && performance.now() - t0 < limit)
    return setTimeout(read, 10);
  if (!n) return done(null);
  done({dom_interactive: n.domInteractive - n.startTime,
        dom_content_loaded: n.domContentLoadedEventEnd - n.startTime,
        load_event_end: n.loadEventEnd - n.startTime,
        first_contentful_paint: fcp ? fcp.startTime : null,
        ready: typeof window.__fb === 'object'});
};
read();
"""
#: Two frames and a task later every Event Timing entry so far has been delivered.
_EVENTS = """
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(
  () => done({events: window.__fb.events, eventTiming: window.__fb.eventTiming}), 0)));
"""


def typed_text(question: str, max_chars: int) -> str:
    """The question's leading words, at most ``max_chars`` characters (at least one word)."""
    words = question.split()
    out = words[0] if words else ""
    for word in words[1:]:
        if len(out) + 1 + len(word) > max_chars:
            break
        out = f"{out} {word}"
    return out


def plan(questions: list[str], per_rep: int, max_chars: int, seed: int) -> list[str]:
    """One repetition's typed queries: a seeded sample of distinct questions."""
    rng = random.Random(seed)
    picked = rng.sample(questions, min(per_rep, len(questions)))
    return [typed_text(q, max_chars) for q in picked]


def _status(record: Mapping[str, Any] | None, errors_before: int, errors_after: int) -> str:
    if record is None:
        return "timeout"
    if errors_after > errors_before:
        return "error:JSError"
    if record.get("ok"):
        return "ok"
    if record.get("error") == "no results rendered":
        return "error:NoResults"
    return "error:SearchFailed"


def one_repetition(driver: Any, url: str, queries: list[str], timeout_s: float) -> dict[str, Any]:
    """Load the page afresh, type every query key by key and submit it; the page's records.

    Returns ``navigation`` (ms figures), ``interactions`` (one per planned interaction:
    ``kind``, ``query``, ``status``, the page's record or None), ``events`` (Event Timing
    entries) and ``event_timing`` (whether the API was available)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    planned = []
    for q in queries:
        planned += [("keystroke", q, ch) for ch in q] + [("search", q, Keys.ENTER)]
    out: dict[str, Any] = {"navigation": None, "interactions": [], "events": [],
                           "event_timing": False, "error": ""}  # fmt: skip
    try:
        driver.get(url)
        out["navigation"] = driver.execute_async_script(_NAVIGATION, int(timeout_s * 1000))
        box = driver.find_element(By.ID, "q")
        errors = 0
        query_start = 0
        for i, (kind, query, key) in enumerate(planned):  # the page numbers them from 0
            if kind == "keystroke" and (i == 0 or planned[i - 1][0] == "search"):
                driver.execute_script("document.getElementById('q').value = '';")
                query_start = i
            box.send_keys(key)
            got = driver.execute_async_script(_WAIT, i, int(timeout_s * 1000))
            record = got["record"]
            status = _status(record, errors, int(got["errors"]))
            errors = int(got["errors"])
            if record is not None and record.get("kind") != kind:
                status = "error:WrongInteraction"
            out["interactions"].append({"kind": kind, "query": query, "status": status,
                                        "record": record, "position": i - query_start})  # fmt: skip
            if record is None:  # the page's numbering can no longer be trusted
                out["error"] = f"interaction {i} ({kind}) timed out: the page load is abandoned"
                break
        out.update(driver.execute_async_script(_EVENTS) or {})
        out["event_timing"] = bool(out.pop("eventTiming", False))
    except WebDriverException as exc:
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        _abandon(out["interactions"], planned, status_for(exc))
    _abandon(out["interactions"], planned, "error:Abandoned")
    return out


def _abandon(done: list[dict[str, Any]], planned: list[tuple[str, str, str]], status: str) -> None:
    """Planned interactions not made become rows: the first with ``status``, the rest
    ``error:Abandoned`` (a failure is counted, never dropped)."""
    for j, (kind, query, _) in enumerate(planned[len(done) :]):
        done.append({"kind": kind, "query": query, "record": None, "position": -1,
                     "status": status if j == 0 else "error:Abandoned"})  # fmt: skip


def _event_durations(events: list[Mapping[str, Any]], start_ms: float) -> float | None:
    """The Event Timing duration (ms) of the keydown that started an interaction."""
    found = [
        e["duration"]
        for e in events
        if e.get("name") == "keydown" and abs(float(e["start"]) - start_ms) < 0.01
    ]
    return max(found) if found else None


def _expected_docs(addr: ServiceAddress, query: str, timeout_s: float) -> list[str] | None:
    """The API's documents for ``query``, asked here; None when it does not answer."""
    try:
        code, doc = _get_json(addr, f"/api/v1/rag?q={quote(query)}", timeout_s)
    except (OSError, ValueError):
        return None
    return [str(h[0]) for h in doc.get("hits", [])] if code == 200 else None


def record_repetition(
    rec: Recorder, rep: int, got: Mapping[str, Any], params: Mapping[str, Any], *,
    warmup: bool, expected: Mapping[str, list[str] | None],
) -> dict[str, int]:  # fmt: skip
    """Rows of one repetition; returns the counts of ok and failed interactions per kind."""
    nav = got["navigation"]
    nav_params = {**params, "timing": "PerformanceNavigationTiming, from its startTime"}
    for metric in ("dom_interactive", "dom_content_loaded", "load_event_end",
                   "first_contentful_paint"):  # fmt: skip
        value = None if nav is None else nav.get(metric)
        status = "ok" if value is not None else ("error:NoNavigation" if nav is None else
                                                  "unavailable")  # fmt: skip
        rec.add("navigation", nav_params, metric, "s", False,
                np.nan if value is None else float(value) / 1e3,
                repetition=rep, warmup=warmup, status=status)  # fmt: skip
    counts = {"keystroke_ok": 0, "keystroke_failed": 0, "search_ok": 0, "search_failed": 0}
    reported = {"keystroke": 0, "search": 0}
    for sample, item in enumerate(got["interactions"]):
        kind, record, status = item["kind"], item["record"], item["status"]
        if kind == "search" and status == "ok" and record["docs"] != expected[item["query"]]:
            status = "mismatch"  # the page shows other documents than the API answers
        p = {**params, "query": item["query"], "position": item["position"]}
        metrics = [("input_to_paint", "end"), ("input_to_handled", "handled")]
        if kind == "search":
            metrics.append(("fetch_time", "fetch"))
        for metric, field in metrics:
            value = np.nan
            if status == "ok":
                value = (float(record[field]) - (0.0 if field == "fetch" else float(
                    record["start"]))) / 1e3  # fmt: skip
            rec.add(kind, p, metric, "s", False, value, repetition=rep, sample=sample,
                    warmup=warmup, status=status)  # fmt: skip
        counts[f"{kind}_{'ok' if status == 'ok' else 'failed'}"] += 1
        if status == "ok":
            duration = _event_durations(got["events"], float(record["start"]))
            if duration is not None:
                reported[kind] += 1
                rec.add(kind, {**p, "source": "Event Timing (keydown), 8 ms granularity"},
                        "event_timing_duration", "s", False, duration / 1e3, repetition=rep,
                        sample=sample, warmup=warmup)  # fmt: skip
    for kind in ("keystroke", "search"):
        ok = counts[f"{kind}_ok"]
        share_params = {**params, "threshold_ms": EVENT_TIMING_THRESHOLD_MS,
                        "event_timing_available": got["event_timing"]}  # fmt: skip
        rec.add(kind, share_params, "event_timing_reported_share", "fraction", False,
                reported[kind] / ok if ok and got["event_timing"] else np.nan,
                repetition=rep, warmup=warmup,
                status="ok" if ok and got["event_timing"] else "unavailable")  # fmt: skip
    return counts


def measure(
    cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress, questions: list[str] | None = None
) -> pd.DataFrame:
    """Every repetition against a running service; ``questions`` default to the service's."""
    timeout_s = float(cfg["timeout_s"])
    if questions is None:
        code, doc = _get_json(addr, "/api/v1/rag/queries", timeout_s)
        questions = list(dict.fromkeys(doc.get("queries", []))) if code == 200 else []
        if not questions:
            raise ForgebenchError(f"{KEY}: the service's RAG endpoint is unavailable ({code})")
    window = cfg["window"]
    warm = int(cfg["warmup_repetitions"])
    total = warm + int(cfg["repetitions"])
    per_rep, max_chars = int(cfg["queries_per_repetition"]), int(cfg["max_typed_chars"])
    base = {"browser": "chromium --headless=new", "window": f"{window['width']}x{window['height']}",
            "queries_per_repetition": per_rep, "max_typed_chars": max_chars,
            "paint": "requestAnimationFrame, then a MessageChannel task",
            "start": "keydown event.timeStamp"}  # fmt: skip
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    with chromium(width=int(window["width"]), height=int(window["height"])) as driver:
        driver.set_script_timeout(timeout_s + 10)
        driver.set_page_load_timeout(timeout_s + 30)
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        version = driver.capabilities.get("browserVersion", "")
        for rep in range(total):
            queries = plan(questions, per_rep, max_chars, seed + 7919 * rep)
            t0 = time.perf_counter()
            got = one_repetition(driver, addr.url + "/ui", queries, timeout_s)
            wall = time.perf_counter() - t0
            expected = {q: _expected_docs(addr, q, timeout_s) for q in queries}
            params = {**base, "chromium": version, "query_seed": seed + 7919 * rep}
            counts = record_repetition(rec, rep, got, params, warmup=rep < warm,
                                       expected=expected)  # fmt: skip
            ks = [r["record"]["end"] - r["record"]["start"] for r in got["interactions"]
                  if r["status"] == "ok" and r["kind"] == "keystroke"]  # fmt: skip
            ss = [r["record"]["end"] - r["record"]["start"] for r in got["interactions"]
                  if r["status"] == "ok" and r["kind"] == "search"]  # fmt: skip
            log.log(
                logging.WARNING if got["error"] or counts["keystroke_failed"]
                or counts["search_failed"] else logging.INFO,
                "repetition %d%s (%.1f s): %s; keystroke input->paint median %.1f ms p95 %.1f "
                "ms (%d ok, %d failed); search median %.1f ms p95 %.1f ms (%d ok, %d failed)%s",
                rep, " (warm-up)" if rep < warm else "", wall, json.dumps(got["navigation"]),
                *_median_p95(ks), counts["keystroke_ok"], counts["keystroke_failed"],
                *_median_p95(ss), counts["search_ok"], counts["search_failed"],
                f"; {got['error']}" if got["error"] else "",
            )  # fmt: skip
    return rec.frame()


def _median_p95(values_ms: list[float]) -> tuple[float, float]:
    if not values_ms:
        return float("nan"), float("nan")
    return float(np.median(values_ms)), float(np.percentile(values_ms, 95))


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service with its RAG index, drive its page in Chromium, always stop both."""
    if int(cfg["queries_per_repetition"]) < 1 or int(cfg["max_typed_chars"]) < 1:
        raise ForgebenchError(f"{KEY}: queries_per_repetition and max_typed_chars must be >= 1")
    settings = server_settings(cfg, seed, rag=True)
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d)", addr.url, addr.pid)
        return measure(cfg, seed=seed, addr=addr)
