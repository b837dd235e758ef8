/*
 * stagedoor admin console: rooms with live stats (polled every 2 s), rate / max active changes,
 * pause / resume, evictions, user roles and blocking, an events report. Admins sign in with email +
 * password (the shop's OAuth2 password grant through /console/api/token, refreshed before the access
 * token expires); SREs may paste the admin API key or an access token instead. The credential is kept
 * in sessionStorage of this origin only. Needs shop.js first (window.SD).
 */
(function () {
  "use strict";

  var SD = window.SD;
  if (!SD) return;
  var T = SD.T, $ = SD.$, el = SD.el, say = SD.say;
  var KEY = "sd_admin_key";           // the bearer: API key, pasted token, or signed-in access token
  var REFRESH = "sd_admin_refresh";   // refresh token of an email + password sign-in
  var EXPIRES = "sd_admin_expires";   // ms when that access token expires
  var POLL_MS = 2000;
  var editing = {};  // room -> true while an input of its row has focus (do not overwrite typing)
  var refreshing = null;

  function tokenRequest(fields) {  // the shop's OAuth2 token endpoint, through this origin's proxy
    return fetch("/console/api/token", {method: "POST", body: new URLSearchParams(fields),
                                        headers: {"Accept": "application/json"}})
      .then(function (res) {
        return res.json().then(function (d) { return {ok: res.ok, status: res.status, data: d, headers: res.headers}; },
                               function () { return {ok: res.ok, status: res.status, data: null, headers: res.headers}; });
      });
  }

  function remember(data) {
    sessionStorage.setItem(KEY, data.access_token);
    if (data.refresh_token) sessionStorage.setItem(REFRESH, data.refresh_token);
    sessionStorage.setItem(EXPIRES, String(Date.now() + (data.expires_in || 0) * 1000));
  }

  function forget() { [KEY, REFRESH, EXPIRES].forEach(function (k) { sessionStorage.removeItem(k); }); }

  function fresh() {  // a signed-in admin's access token lives minutes: refresh it shortly before it ends
    var rt = sessionStorage.getItem(REFRESH);
    var exp = parseInt(sessionStorage.getItem(EXPIRES) || "0", 10);
    if (!rt || exp - Date.now() > 30000) return Promise.resolve();
    if (!refreshing) {
      refreshing = tokenRequest({grant_type: "refresh_token", refresh_token: rt}).then(function (res) {
        refreshing = null;
        if (res.ok) { remember(res.data); return; }
        forget();
        say(T.console_session_over, "warn");
      }, function () { refreshing = null; });
    }
    return refreshing;
  }

  function call(method, path, body) {
    return fresh().then(function () { return send(method, path, body); });
  }

  function send(method, path, body) {
    var headers = {"Accept": "application/json", "Authorization": "Bearer " + sessionStorage.getItem(KEY)};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (res) {
        if (res.status === 204) return {ok: true, status: 204, data: null};
        return res.json().then(function (d) { return {ok: res.ok, status: res.status, data: d}; },
                               function () { return {ok: res.ok, status: res.status, data: null}; });
      });
  }

  function numberInput(value, label, attrs) {
    var input = el("input", Object.assign({type: "number", value: String(value), "aria-label": label}, attrs));
    return input;
  }

  function autoRateInputs(room) {
    var td = el("td", {"class": "r-auto", "data-label": T.console_rate_mode});
    var mode = el("select", {"class": "r-rate-mode", "aria-label": T.console_rate_mode + " " + room.room});
    ["fixed", "auto"].forEach(function (m) {
      var opt = el("option", {value: m}, m === "auto" ? T.console_rate_auto : T.console_rate_fixed);
      if (room.rate_mode === m) opt.selected = true;
      mode.appendChild(opt);
    });
    var lo = numberInput(room.rate_min_per_s === null ? "" : room.rate_min_per_s, T.console_rate_min + " " + room.room,
                         {min: "0.01", step: "0.01", "class": "r-rate-min", placeholder: T.console_rate_min});
    var hi = numberInput(room.rate_max_per_s === null ? "" : room.rate_max_per_s, T.console_rate_max + " " + room.room,
                         {min: "0.01", step: "0.01", "class": "r-rate-max", placeholder: T.console_rate_max});
    [mode, lo, hi].forEach(function (input) {
      input.addEventListener("focus", function () { editing[room.room] = true; });
      input.addEventListener("blur", function () { editing[room.room] = false; });
    });
    td.appendChild(mode); td.appendChild(lo); td.appendChild(hi);
    td.appendChild(el("span", {"class": "r-rate-now"}, rateNow(room)));
    return {td: td, patch: function () {
      var out = {rate_mode: mode.value};
      if (lo.value !== "") out.rate_min_per_s = parseFloat(lo.value);
      if (hi.value !== "") out.rate_max_per_s = parseFloat(hi.value);
      return out;
    }};
  }

  function rateNow(room) {
    return T.console_rate_now.replace("{rate}", room.rate_current_per_s.toFixed(2));
  }

  function renderRow(room) {
    var tr = el("tr", {"data-room": room.room});
    var name = el("th", {scope: "row"});
    name.appendChild(el("a", {href: document.body.getAttribute("data-waitingroom-url") + "/rooms/" + room.room}, room.room));
    tr.appendChild(name);
    var state = room.sold_out ? T.console_sold_out : room.paused ? T.console_paused : T.console_running;
    tr.appendChild(el("td", {"class": "r-state", "data-label": T.console_state}, state + " · " + room.mode));
    tr.appendChild(el("td", {"class": "r-waiting", "data-label": T.console_waiting}, String(room.waiting)));
    tr.appendChild(el("td", {"class": "r-active", "data-label": T.console_active}, String(room.active)));
    tr.appendChild(el("td", {"class": "r-admitted", "data-label": T.console_admitted}, String(room.admitted_total)));
    tr.appendChild(el("td", {"class": "r-observed", "data-label": T.console_observed}, room.admit_rate_observed.toFixed(2)));
    var rate = numberInput(room.rate_per_s, T.console_rate + " " + room.room, {min: "0.01", step: "0.01", "class": "r-rate"});
    var max = numberInput(room.max_active, T.console_max_active + " " + room.room, {min: "1", step: "1", "class": "r-max"});
    [rate, max].forEach(function (input) {
      input.addEventListener("focus", function () { editing[room.room] = true; });
      input.addEventListener("blur", function () { editing[room.room] = false; });
    });
    var tdRate = el("td", {"data-label": T.console_rate}); tdRate.appendChild(rate); tr.appendChild(tdRate);
    var tdMax = el("td", {"data-label": T.console_max_active}); tdMax.appendChild(max); tr.appendChild(tdMax);
    // Automatic rate (docs/admission.md): the mode, its bounds, and the rate admission runs at now.
    var auto = autoRateInputs(room);
    tr.appendChild(auto.td);
    var actions = el("td", {"class": "row"});
    var apply = el("button", {type: "button"}, T.console_apply);
    apply.setAttribute("aria-label", T.console_apply + " " + room.room);
    apply.addEventListener("click", function () {
      editing[room.room] = false;
      call("PATCH", "/admin/rooms/" + encodeURIComponent(room.room),
           Object.assign({rate_per_s: parseFloat(rate.value), max_active: parseInt(max.value, 10)}, auto.patch()))
        .then(function (res) { say(res.ok ? T.console_saved + " " + room.room : SD.problemText(res), res.ok ? "ok" : "error"); refresh(); });
    });
    var toggle = el("button", {type: "button", "class": "secondary"}, room.paused ? T.console_resume : T.console_pause);
    toggle.setAttribute("aria-label", (room.paused ? T.console_resume : T.console_pause) + " " + room.room);
    toggle.addEventListener("click", function () {
      call("POST", "/admin/rooms/" + encodeURIComponent(room.room) + (room.paused ? "/resume" : "/pause"))
        .then(function (res) { if (!res.ok) say(SD.problemText(res)); refresh(); });
    });
    actions.appendChild(apply);
    actions.appendChild(toggle);
    tr.appendChild(actions);
    return tr;
  }

  function refresh() {
    return call("GET", "/admin/rooms").then(function (res) {
      if (res.status === 401 || res.status === 403) {
        forget();
        say(SD.problemText(res));
        show(false);
        return;
      }
      if (!res.ok) { say(SD.problemText(res)); return; }
      var tbody = $("#rooms tbody");
      var rooms = res.data.items || [];
      $("#no-rooms").hidden = rooms.length > 0;
      rooms.forEach(function (room) {
        var existing = tbody.querySelector('tr[data-room="' + room.room + '"]');
        if (existing && editing[room.room]) {  // only the live numbers while someone types
          existing.querySelector(".r-waiting").textContent = String(room.waiting);
          existing.querySelector(".r-active").textContent = String(room.active);
          existing.querySelector(".r-admitted").textContent = String(room.admitted_total);
          existing.querySelector(".r-observed").textContent = room.admit_rate_observed.toFixed(2);
          existing.querySelector(".r-rate-now").textContent = rateNow(room);
          return;
        }
        var row = renderRow(room);
        if (existing) tbody.replaceChild(row, existing); else tbody.appendChild(row);
      });
    });
  }

  var timer = null;
  function show(connected) {
    $("#console").hidden = !connected;
    $("#signin").hidden = connected;
    $("#console-signout").hidden = !connected;
    clearInterval(timer);
    if (connected) { refresh(); timer = setInterval(refresh, POLL_MS); loadUsers(true); loadEvents(true); }
  }

  $("#key-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    forget();
    sessionStorage.setItem(KEY, $("#admin-key").value.trim());
    $("#admin-key").value = "";
    say("");
    show(true);
  });
  $("#login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var button = $("#login-form button");
    button.disabled = true;
    tokenRequest({grant_type: "password", username: $("#admin-email").value.trim(),
                  password: $("#admin-password").value}).then(function (res) {
      button.disabled = false;
      if (res.status === 429) {
        say(SD.tr("console_too_many", {s: res.headers.get("Retry-After") || "60"}), "warn");
        return;
      }
      if (!res.ok) { say(res.status === 400 || res.status === 401 ? T.signin_failed : SD.problemText(res)); return; }
      var payload = null;
      try {
        var part = res.data.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
        while (part.length % 4) part += "=";
        payload = JSON.parse(atob(part));
      } catch (e) { payload = null; }
      if (!payload || (payload.roles || []).indexOf("admin") < 0) { say(T.console_not_admin); return; }
      $("#admin-password").value = "";
      remember(res.data);
      say("");
      show(true);
    }, function () { button.disabled = false; say(T.error_generic.replace("{detail}", "network")); });
  });
  $("#console-signout").addEventListener("click", function () { forget(); show(false); });

  $("#evict-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var room = $("#evict-room").value.trim(), visitor = $("#evict-visitor").value.trim();
    call("DELETE", "/admin/rooms/" + encodeURIComponent(room) + "/visitors/" + encodeURIComponent(visitor))
      .then(function (res) { say(res.ok ? T.console_evicted : SD.problemText(res), res.ok ? "ok" : "error"); });
  });

  // ---------------------------------------------------------------- users
  var usersCursor = null;
  function userRow(user) {
    var tr = el("tr", {"data-user": user.id});
    tr.appendChild(el("th", {scope: "row"}, user.email));
    tr.appendChild(el("td", {"data-label": T.name}, user.name));
    var roles = el("input", {value: (user.roles || []).join(", "), maxlength: "100",
                             "aria-label": T.console_roles + " " + user.email, "class": "u-roles"});
    var tdRoles = el("td", {"data-label": T.console_roles}); tdRoles.appendChild(roles); tr.appendChild(tdRoles);
    var blocked = el("input", {type: "checkbox", "aria-label": T.console_block + " " + user.email, "class": "u-blocked"});
    blocked.checked = !!user.blocked;
    var tdBlocked = el("td", {"data-label": T.console_block}); tdBlocked.appendChild(blocked); tr.appendChild(tdBlocked);
    var apply = el("button", {type: "button", "aria-label": T.console_user_apply + " " + user.email}, T.console_user_apply);
    apply.addEventListener("click", function () {
      var list = roles.value.split(",").map(function (r) { return r.trim(); }).filter(Boolean);
      call("PATCH", "/console/api/users/" + encodeURIComponent(user.id), {roles: list, blocked: blocked.checked})
        .then(function (res) { say(res.ok ? T.console_saved + " " + user.email : SD.problemText(res), res.ok ? "ok" : "error"); });
    });
    var tdApply = el("td"); tdApply.appendChild(apply); tr.appendChild(tdApply);
    return tr;
  }

  function loadUsers(reset) {
    if (reset) { usersCursor = null; $("#users tbody").textContent = ""; }
    var q = $("#user-q").value.trim();
    var path = "/console/api/users?limit=50" + (q ? "&q=" + encodeURIComponent(q) : "") +
      (usersCursor ? "&cursor=" + encodeURIComponent(usersCursor) : "");
    call("GET", path).then(function (res) {
      if (!res.ok) { say(SD.problemText(res)); return; }
      res.data.items.forEach(function (u) { $("#users tbody").appendChild(userRow(u)); });
      usersCursor = res.data.next_cursor;
      $("#users-more").hidden = !usersCursor;
    });
  }
  $("#user-search").addEventListener("submit", function (ev) { ev.preventDefault(); loadUsers(true); });
  $("#users-more").addEventListener("click", function () { loadUsers(false); });

  // ---------------------------------------------------------------- events report
  var eventsCursor = null, eventsTotals = {n: 0, sold: 0, free: 0};
  function eventRow(ev) {
    var tr = el("tr");
    var name = el("th", {scope: "row"});
    var shop = (document.body.getAttribute("data-ticketing-url") || "").replace(/\/$/, "");
    name.appendChild(el("a", {href: shop + "/organizer/events/" + ev.id}, ev.title));
    name.appendChild(el("span", {"class": "cell-links muted"}, ev.venue + ", " + ev.city));
    tr.appendChild(name);
    SD.eventCells(tr, ev);
    tr.appendChild(el("td", {"data-label": T.console_room}, ev.room || "–"));
    tr.appendChild(el("td", {"class": "muted", "data-label": T.console_organizer}, ev.organizer_id.slice(0, 8)));
    return tr;
  }
  function loadEvents(reset) {
    if (reset) { eventsCursor = null; eventsTotals = {n: 0, sold: 0, free: 0}; $("#events tbody").textContent = ""; }
    var status = $("#events-status").value;
    var path = "/console/api/events?limit=50" + (status ? "&status=" + encodeURIComponent(status) : "") +
      (eventsCursor ? "&cursor=" + encodeURIComponent(eventsCursor) : "");
    call("GET", path).then(function (res) {
      if (!res.ok) { say(SD.problemText(res)); return; }
      res.data.items.forEach(function (ev) {
        $("#events tbody").appendChild(eventRow(ev));
        eventsTotals.n += 1; eventsTotals.sold += ev.sold; eventsTotals.free += ev.free;
      });
      $("#events-total").textContent = SD.tr("console_events_total", eventsTotals);
      eventsCursor = res.data.next_cursor;
      $("#events-more").hidden = !eventsCursor;
    });
  }
  $("#events-status").addEventListener("change", function () { loadEvents(true); });
  $("#events-filter").addEventListener("submit", function (ev) { ev.preventDefault(); loadEvents(true); });
  $("#events-more").addEventListener("click", function () { loadEvents(false); });

  show(!!sessionStorage.getItem(KEY));
})();
