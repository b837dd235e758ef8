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

  // The state the server rendered; another state (pre-queue -> waiting, paused) is re-rendered by it.
  var rendered = byId("position") ? "waiting" : byId("eta") ? "pre_queue" : null;
  var renderedPaused = !byId("eta") && !!byId("position");

  function apply(status) {
    if (!status || done) return;
    if (rendered && status.state !== rendered && status.state !== "admitted") { done = true; location.reload(); return; }
    if (rendered === "waiting" && !!status.paused !== renderedPaused) { done = true; location.reload(); return; }
    if (status.state === "admitted") { if (!admitted(status)) location.reload(); return; }
    if (status.state === "sold_out" || status.state === "closed" || status.state === "expired") {
      done = true;
      location.reload();  // the server renders these states with their explanation
      return;
    }
    setText("position", status.position);
    setText("ahead", status.ahead);
    if (status.eta_s !== null && status.eta_s !== undefined) setText("eta", status.eta_s);
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

  function poll() {
    if (done) return;
    fetch(base + "/status", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(apply)
      .catch(function () {})
      .then(function () { if (!done) setTimeout(poll, POLL_MS); });
  }

  function live() {
    if (!window.EventSource) { poll(); return; }
    var stream = new EventSource(base + "/events");
    stream.addEventListener("status", function (ev) {
      try { apply(JSON.parse(ev.data)); } catch (e) { /* a malformed frame: the next one will do */ }
      if (done) stream.close();
    });
    stream.onerror = function () {  // stream ended (server limit) or failed: poll instead
      stream.close();
      if (!done) poll();
    };
  }

  // Countdown before the sale: the server-rendered seconds tick down here.
  function countdown() {
    var big = document.querySelector("p .big:not([id])");
    if (!big) return;
    var left = parseInt(big.textContent, 10);
    if (!(left > 0)) return;
    var timer = setInterval(function () {
      left -= 1;
      big.textContent = String(Math.max(0, left));
      if (left <= 0) { clearInterval(timer); location.reload(); }
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
      }).then(function () {
        location.reload();
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
    var wait = Math.min(Math.max(at - Date.now(), 0) + 500, 2147483000);
    setTimeout(function () { location.reload(); }, wait);
  }

  upgradeJoinForm();
  countdown();
  reloadWhenOpen();
  if (byId("position") || byId("eta") || document.querySelector(".bar")) live();
})();
