/*
 * stagedoor queue page upgrade (templates/queue.html works without it, by a meta refresh inside
 * <noscript>, so pages with this script are never reloaded on a timer).
 * Load after pow.js, both external (CSP):  <script src="/static/pow.js" defer></script>
 *                                          <script src="/static/queue.js" defer></script>
 * - live position / people ahead / ETA / progress bar from the SSE stream
 *   (GET /api/rooms/{room}/events, cookie-authenticated), polling /status every 2 s when
 *   EventSource is missing or the stream fails;
 * - a ticking countdown before the sale starts;
 * - joining through the JSON API, solving the proof-of-work challenge first when the room
 *   requires one (data-pow on <body>, or a "pow-required" answer to a first try; StagedoorPow
 *   from pow.js), with progress shown;
 * - the page's states (pre-queue, waiting, paused, all held, sold out, closed) shown in place from the
 *   page's <template>s, without a reload: after a join, at the sale's start, on pause and
 *   resume, every open page would otherwise reload at once;
 * - on admission: straight to the shop with the admission token in the URL fragment
 *   (never sent to a server, never in access logs); the shop reads and removes it.
 */
(function () {
  "use strict";

  var body = document.body;
  var room = body.getAttribute("data-room");
  if (!room) return;
  var base = "/api/rooms/" + encodeURIComponent(room);
  var POLL_MS = 2000;
  var done = false;

  function byId(id) { return document.getElementById(id); }
  function setText(id, value) { var n = byId(id); if (n && value !== null && value !== undefined) n.textContent = String(value); }

  function admitted(status) {
    if (done || !status.shop_url || !status.admission_token) return false;
    done = true;
    location.replace(status.shop_url + "#admission_token=" + encodeURIComponent(status.admission_token));
    return true;
  }

  // The state the server rendered (#state's data-state). The states a page moves through are
  // also in the page as <template>s: pre-queue -> waiting at the sale's start, pause and resume,
  // sold out and closed are shown in place. A reload for each would come from every open page
  // at the same second (at the start, on a pause), the moment the waiting room is busiest.
  var stateBox = byId("state");
  var rendered = stateBox ? stateBox.getAttribute("data-state") : null;

  function show(state) {
    var tpl = byId("tpl-" + state);
    if (!tpl || !stateBox) return false;
    stateBox.replaceChildren(tpl.content.cloneNode(true));
    stateBox.setAttribute("data-state", state);
    rendered = state;
    return true;
  }

  function apply(status) {
    if (!status || done) return;
    if (status.state === "admitted") {
      if (!admitted(status)) { done = true; location.reload(); }
      return;
    }
    if (status.state !== rendered && !show(status.state)) {
      done = true;
      location.reload();  // expired and the like: the server renders them with their explanation
      return;
    }
    if (status.state === "sold_out" || status.state === "closed") { done = true; return; }
    setText("position", status.position);
    setText("ahead", status.ahead);
    var hasEta = status.eta_s !== null && status.eta_s !== undefined;
    if (hasEta) setText("eta", status.eta_s);
    var pausedNote = byId("paused-note");
    var etaNote = byId("eta-note");
    var heldNote = byId("held-note");
    if (pausedNote) pausedNote.hidden = !status.paused;
    if (heldNote) heldNote.hidden = status.reason !== "all_held";
    if (etaNote) etaNote.hidden = !!status.paused || !hasEta;
    var bar = document.querySelector(".bar > div");
    if (bar && status.position && status.waiting_total) {
      var total = Math.max(status.waiting_total, status.position);
      var pct = Math.max(1, Math.min(100, Math.round(100 * (total - status.position + 1) / total)));
      bar.style.width = pct + "%";
      bar.parentNode.setAttribute("role", "progressbar");
      bar.parentNode.setAttribute("aria-valuenow", String(pct));
      bar.parentNode.setAttribute("aria-valuemin", "0");
      bar.parentNode.setAttribute("aria-valuemax", "100");
    }
  }

  // Before the start, the seconds left tick down here between status updates.
  setInterval(function () {
    if (rendered !== "pre_queue" || done) return;
    var eta = byId("eta");
    var left = eta ? parseInt(eta.textContent, 10) : NaN;
    if (left > 0) eta.textContent = String(left - 1);
  }, 1000);

  // The queue out of reach (503 while Redis is down, no network, answers that hang): say so and
  // ask the fan to keep the page open (its polls are the heartbeat that keeps the place). Shown
  // after two signs of trouble in a row (a failed stream, a failed poll, a poll unanswered after
  // SLOW_MS), hidden by the next answer.
  var SLOW_MS = 3000;
  var failures = 0;
  function trouble(failed) {
    failures = failed ? failures + 1 : 0;
    var n = byId("trouble-note");
    if (n) n.hidden = failures < 2;
  }

  function poll() {
    if (done) return;
    var slow = setTimeout(function () { trouble(true); }, SLOW_MS);
    fetch(base + "/status", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (status) { clearTimeout(slow); trouble(!status); apply(status); })
      .catch(function () { clearTimeout(slow); trouble(true); })
      .then(function () { if (!done) setTimeout(poll, POLL_MS); });
  }

  var listening = false;
  function live() {
    if (listening) return;
    listening = true;
    if (!window.EventSource) { poll(); return; }
    var stream = new EventSource(base + "/events");
    stream.addEventListener("status", function (ev) {
      trouble(false);
      try { apply(JSON.parse(ev.data)); } catch (e) { /* a malformed frame: the next one will do */ }
      if (done) stream.close();
    });
    stream.onerror = function () {  // stream ended (server limit) or failed: poll instead
      stream.close();
      if (!done) { trouble(true); poll(); }
    };
  }

  // Countdown before the sale (not joined yet): the server-rendered seconds tick down here, and
  // the card goes at the start (the join form below it stays).
  function countdown() {
    var card = byId("countdown");
    var big = card && card.querySelector(".big");
    if (!big) return;
    var left = parseInt(big.textContent, 10);
    if (!(left > 0)) return;
    var timer = setInterval(function () {
      left -= 1;
      big.textContent = String(Math.max(0, left));
      if (left <= 0) { clearInterval(timer); card.remove(); }
    }, 1000);
  }

  // Join through the API, solving a proof-of-work challenge first when the room requires one.
  // The page says whether it does (data-pow: the difficulty when it was rendered), so a join in
  // a room without proof of work is one request, not two; a room that started to require it
  // after the page was rendered answers "pow-required", and the page then solves and joins again.
  var powDifficulty = parseInt(body.getAttribute("data-pow") || "0", 10) || 0;

  function upgradeJoinForm() {
    var form = document.querySelector('form[action="/rooms/' + room + '"]');
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      var note = document.createElement("p");
      note.setAttribute("role", "status");
      form.appendChild(note);

      function solve() {
        if (!window.StagedoorPow) return Promise.resolve(null);  // the server then says what is missing
        note.textContent = "Checking your browser…";
        return window.StagedoorPow.fetchAndSolve(base + "/pow", {onProgress: function (tried) {
          note.textContent = "Checking your browser… " + tried + " tries";
        }});
      }
      function join(pow) {
        return fetch(base + "/join", {method: "POST", credentials: "same-origin",
                                      headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(pow ? {pow: pow} : {})});
      }
      function readProblem(res) {
        return res.json().catch(function () { return null; }).then(function (p) { return p || {}; });
      }
      function refused(res, p) {
        var e = new Error(p.detail || p.title || ("HTTP " + res.status));
        e.final = res.status === 409 || res.status === 404;  // sold out, closed, unknown room: no retry
        return e;
      }

      var solved = powDifficulty > 0;
      (solved ? solve() : Promise.resolve(null)).then(join).then(function (res) {
        if (res.ok) return res;
        return readProblem(res).then(function (p) {
          if (res.status === 403 && !solved && p.type === "/problems/pow-required") {
            solved = true;
            return solve().then(join).then(function (again) {
              return again.ok ? again : readProblem(again).then(function (q) { throw refused(again, q); });
            });
          }
          throw refused(res, p);
        });
      }).then(function (res) {
        return res.json();
      }).then(function (joined) {
        apply(joined);  // the place (or the shop, when admitted at once), shown without a reload
        if (!done) live();
      }).catch(function (err) {
        note.className = "err";
        note.textContent = "Could not join: " + err.message;
        if (button) { button.disabled = false; button.hidden = !!err.final; }
      });
    });
  }

  // Before the queue opens: reload when it does (without JavaScript the page refreshes itself).
  function reloadWhenOpen() {
    var opens = document.querySelector("time[datetime]");
    if (!opens || document.querySelector("form")) return;
    var at = Date.parse(opens.getAttribute("datetime"));
    if (isNaN(at)) return;
    // spread over 3 s: every page waiting for the opening would otherwise reload in the same second
    var wait = Math.min(Math.max(at - Date.now(), 0) + 500 + Math.random() * 3000, 2147483000);
    setTimeout(function () { location.reload(); }, wait);
  }

  upgradeJoinForm();
  countdown();
  reloadWhenOpen();
  if (rendered === "waiting" || rendered === "pre_queue") live();
})();
