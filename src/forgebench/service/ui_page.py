"""The service's one server-rendered HTML page (``GET /ui``): a search box over the RAG index.

Why: the UI target ("interactions under 50 ms") needs a real page with a real interaction
for a real browser to measure (``forgebench.service.ui_interactions``). Typing updates the
page on the client alone (a character/word count and the shown results that match the
typed words are highlighted); submitting fetches ``/api/v1/rag`` and renders the hits into
the list. The page times itself, inside the browser, so no WebDriver round trip is in the
figures:

* every interaction is a record in ``window.__fb.interactions``: ``start`` is the
  triggering ``keydown``'s ``event.timeStamp`` (the submit event's when there is none),
  ``handled`` is ``performance.now()`` after the DOM update (for a search: after the fetch
  and the render), ``end`` is ``performance.now()`` in a task posted from the next
  ``requestAnimationFrame`` callback (the frame that paints the update has been produced:
  input to next paint, approximated);
* the Event Timing API (``PerformanceObserver`` of type ``event``, ``durationThreshold``
  16 ms, its minimum) lands in ``window.__fb.events``: the browser's own input-to-next-paint
  ``duration``, rounded to 8 ms, reported only for events of 16 ms or more;
* uncaught errors land in ``window.__fb.errors``; ``window.__fb.waitFor(id, ms)`` resolves
  with interaction ``id``'s record (or null after ``ms``), so the driver waits without
  polling the page.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>forgebench search</title>
<link rel="icon" href="data:,">
<style>
body{font:16px system-ui,sans-serif;margin:2em auto;max-width:48em}
input{font-size:1.1em;width:70%} #results li{margin:.25em 0} #results li.match{background:#fe8}
</style></head><body>
<h1>Search the passages</h1>
<form id="search" role="search"><input id="q" name="q" autocomplete="off"
 placeholder="Ask a question"> <button type="submit">Search</button></form>
<p id="status" aria-live="polite">Type a question.</p>
<ol id="results"></ol>
<script>
(() => {
  const rec = window.__fb = {interactions: [], events: [], errors: [], eventTiming: false};
  const waiters = new Map();
  addEventListener('error', e => rec.errors.push(String(e.message)));
  addEventListener('unhandledrejection', e => rec.errors.push(String(e.reason)));
  try {
    new PerformanceObserver(list => {
      for (const e of list.getEntries()) rec.events.push({name: e.name, start: e.startTime,
        duration: e.duration, interactionId: e.interactionId || 0});
    }).observe({type: 'event', durationThreshold: 16, buffered: true});
    rec.eventTiming = true;
  } catch (err) { rec.eventTiming = false; }
  const q = document.getElementById('q'), form = document.getElementById('search');
  const status = document.getElementById('status'), list = document.getElementById('results');
  const channel = new MessageChannel(), painted = [];
  channel.port1.onmessage = () => painted.shift()(performance.now());
  const afterPaint = () => new Promise(resolve => requestAnimationFrame(() => {
    painted.push(resolve); channel.port2.postMessage(0); }));
  const save = r => {
    rec.interactions.push(r);
    const w = waiters.get(r.id); if (w) { waiters.delete(r.id); w(r); }
  };
  rec.waitFor = (id, ms) => new Promise(resolve => {
    const r = rec.interactions.find(x => x.id === id); if (r) return resolve(r);
    waiters.set(id, resolve); setTimeout(() => { waiters.delete(id); resolve(null); }, ms);
  });
  let seq = 0, keydown = null;
  q.addEventListener('keydown', e => { keydown = {key: e.key, t: e.timeStamp}; });
  const startOf = (e, key) => {
    const t = keydown && (key === undefined || keydown.key === key) ? keydown.t : e.timeStamp;
    keydown = null; return t;
  };
  q.addEventListener('input', e => {
    const r = {id: seq++, kind: 'keystroke', start: startOf(e), ok: true};
    const words = q.value.toLowerCase().split(/\\s+/).filter(Boolean);
    status.textContent = `${q.value.length} characters, ${words.length} words`;
    for (const li of list.children)
      li.classList.toggle('match', words.some(w => li.dataset.doc.toLowerCase().includes(w)));
    r.handled = performance.now();
    afterPaint().then(end => { r.end = end; save(r); });
  });
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const text = q.value.trim();
    const r = {id: seq++, kind: 'search', start: startOf(e, 'Enter'), query: text, ok: false};
    status.textContent = 'Searching\\u2026';
    try {
      const t0 = performance.now();
      const resp = await fetch('/api/v1/rag?q=' + encodeURIComponent(text), {cache: 'no-store'});
      const body = await resp.json();
      r.fetch = performance.now() - t0;
      if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${body.error || ''}`);
      const hits = body.hits || [];
      list.replaceChildren(...hits.map(([doc, score]) => {
        const li = document.createElement('li');
        li.dataset.doc = String(doc); li.textContent = `${doc} (score ${score.toFixed(3)})`;
        return li;
      }));
      status.textContent = `${hits.length} results`;
      r.docs = Array.from(list.children, li => li.dataset.doc);
      r.ok = r.docs.length > 0;
      if (!r.ok) r.error = 'no results rendered';
    } catch (err) {
      r.error = String(err); list.replaceChildren(); status.textContent = 'Search failed';
    }
    r.handled = performance.now();
    r.end = await afterPaint();
    save(r);
  });
})();
</script></body></html>
"""


async def ui_page(request: Request) -> Response:
    """The search page; no per-request work beyond sending it."""
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
