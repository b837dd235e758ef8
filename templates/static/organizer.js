/*
 * stagedoor organizer pages: event builder (tiers + sections x rows x seats), room settings
 * (through the shop's same-origin proxy to the admission API), live sales dashboard, check-in.
 * Needs shop.js first (window.SD). Times in the forms are UTC.
 */
(function () {
  "use strict";

  var SD = window.SD;
  if (!SD) return;
  var T = SD.T, $ = SD.$, $all = SD.$all, el = SD.el, api = SD.api, say = SD.say;
  var MAX_PREVIEW_SEATS = 5000;
  var COLOURS = ["#1f6fb2", "#b2461f", "#2e7d32", "#7b3fa0", "#a07800", "#00796b", "#c2185b", "#5d4037"];

  function utc(value) { return value ? value + (value.length === 16 ? ":00Z" : "Z") : null; }
  function localInput(date) { return date.toISOString().slice(0, 16); }

  function input(attrs) { return el("input", attrs); }

  function removeButton(row, after) {
    var b = el("button", {type: "button", "class": "secondary"}, T.remove);
    b.addEventListener("click", function () { row.remove(); after(); });
    var td = el("td");
    td.appendChild(b);
    return td;
  }

  function cell(node, label) {
    node.setAttribute("aria-label", label);
    var td = el("td");
    td.appendChild(node);
    return td;
  }

  // ---------------------------------------------------------------- builder
  function initBuilder() {
    if (!SD.requireSignIn()) return;
    var tiers = $("#tiers"), sections = $("#sections");
    var now = new Date();
    var start = new Date(now.getTime() + 30 * 86400000);
    start.setUTCMinutes(0, 0, 0);
    $("#ev-starts").value = localInput(start);
    $("#ev-ends").value = localInput(new Date(start.getTime() + 3 * 3600000));

    function addTier(code, name, price, qty) {
      var n = tiers.children.length + 1;
      var row = el("tr");
      row.appendChild(cell(input({"class": "t-code", value: code, maxlength: "32", required: ""}), T.tier_code + " " + n));
      row.appendChild(cell(input({"class": "t-name", value: name, maxlength: "100", required: ""}), T.tier_name + " " + n));
      row.appendChild(cell(input({"class": "t-price", type: "number", min: "0", value: price}), T.tier_price + " " + n));
      row.appendChild(cell(input({"class": "t-qty", type: "number", min: "1", value: qty || ""}), T.tier_quantity + " " + n));
      row.appendChild(removeButton(row, preview));
      tiers.appendChild(row);
    }

    function addSection(name, rows, seats, tier) {
      var n = sections.children.length + 1;
      var row = el("tr");
      row.appendChild(cell(input({"class": "s-name", value: name, maxlength: "50"}), T.section_name + " " + n));
      row.appendChild(cell(input({"class": "s-rows", type: "number", min: "1", max: "1000", value: rows}), T.section_rows + " " + n));
      row.appendChild(cell(input({"class": "s-seats", type: "number", min: "1", max: "2000", value: seats}), T.section_seats + " " + n));
      row.appendChild(cell(input({"class": "s-tier", value: tier, maxlength: "32"}), T.section_tier + " " + n));
      row.appendChild(removeButton(row, preview));
      sections.appendChild(row);
      preview();
    }

    function readTiers() {
      return $all("#tiers tr").map(function (row) {
        var tier = {code: $(".t-code", row).value.trim(), name: $(".t-name", row).value.trim(),
                    price: parseInt($(".t-price", row).value, 10) || 0};
        var qty = parseInt($(".t-qty", row).value, 10);
        if (qty > 0) tier.quantity = qty;
        return tier;
      });
    }

    function readSections() {
      return $all("#sections tr").map(function (row) {
        return {name: $(".s-name", row).value.trim(), rows: parseInt($(".s-rows", row).value, 10) || 0,
                seats: parseInt($(".s-seats", row).value, 10) || 0, tier: $(".s-tier", row).value.trim()};
      }).filter(function (s) { return s.name && s.rows > 0 && s.seats > 0; });
    }

    function rowLabel(i) {  // A..Z, AA..AZ, ...
      var label = "";
      i += 1;
      while (i > 0) { var m = (i - 1) % 26; label = String.fromCharCode(65 + m) + label; i = Math.floor((i - 1) / 26); }
      return label;
    }

    function seatMap() {
      var secs = readSections();
      if (!secs.length) return null;
      return {sections: secs.map(function (s) {
        var rows = [];
        for (var r = 0; r < s.rows; r++) {
          var seats = [];
          for (var n = 1; n <= s.seats; n++) seats.push({number: String(n), tier: s.tier});
          rows.push({label: rowLabel(r), seats: seats});
        }
        return {name: s.name, rows: rows};
      })};
    }

    function preview() {
      var svg = $("#preview");
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      var secs = readSections();
      var codes = readTiers().map(function (t) { return t.code; });
      var total = secs.reduce(function (a, s) { return a + s.rows * s.seats; }, 0);
      $("#preview-summary").textContent = secs.length
        ? secs.map(function (s) { return s.name + ": " + s.rows + " × " + s.seats + " (" + s.tier + ")"; }).join("; ") + " = " + total
        : T.ga_title;
      if (!total || total > MAX_PREVIEW_SEATS) { svg.setAttribute("height", "10"); return; }
      var ns = "http://www.w3.org/2000/svg", y = 0, width = 200, px = 10;
      secs.forEach(function (s) {
        y += 14;
        var label = document.createElementNS(ns, "text");
        label.setAttribute("x", "0"); label.setAttribute("y", String(y)); label.setAttribute("class", "map-label");
        label.textContent = s.name;
        svg.appendChild(label);
        y += 4;
        var colour = COLOURS[Math.max(0, codes.indexOf(s.tier)) % COLOURS.length];
        for (var r = 0; r < s.rows; r++) {
          for (var n = 0; n < s.seats; n++) {
            var rect = document.createElementNS(ns, "rect");
            rect.setAttribute("x", String(n * px)); rect.setAttribute("y", String(y));
            rect.setAttribute("width", String(px - 2)); rect.setAttribute("height", String(px - 2));
            rect.setAttribute("fill", codes.indexOf(s.tier) >= 0 ? colour : "#c00");
            svg.appendChild(rect);
            width = Math.max(width, (n + 1) * px);
          }
          y += px;
        }
      });
      svg.setAttribute("width", String(width));
      svg.setAttribute("height", String(y + 4));
      svg.setAttribute("viewBox", "0 0 " + width + " " + (y + 4));
    }

    addTier("front", "Front", 8000, null);
    addTier("back", "Back", 4500, null);
    addSection("Stalls", 4, 10, "front");
    $("#add-tier").addEventListener("click", function () { addTier("", "", 0, null); });
    $("#add-section").addEventListener("click", function () { addSection("", 1, 10, ""); });
    $("#event-form").addEventListener("input", preview);

    $("#event-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      say("");
      var body = {
        title: $("#ev-title").value.trim(), description: $("#ev-description").value, category: $("#ev-category").value.trim(),
        venue: {name: $("#ev-venue").value.trim(), city: $("#ev-city").value.trim(), address: $("#ev-address").value.trim()},
        starts_at: utc($("#ev-starts").value), ends_at: utc($("#ev-ends").value),
        currency: $("#ev-currency").value.trim().toUpperCase(),
        max_tickets_per_order: parseInt($("#ev-per-order").value, 10) || 1,
        tiers: readTiers()
      };
      var map = seatMap();
      if (map) body.seat_map = map;
      var button = $("#create");
      button.disabled = true;
      api("POST", "/api/events", body).then(function (res) {
        button.disabled = false;
        if (res.status !== 201) {
          var detail = SD.problemText(res);
          if (res.data && res.data.errors) detail += ": " + res.data.errors.map(function (e) { return e.field + " " + e.message; }).join("; ");
          say(SD.tr("error_generic", {detail: detail}));
          return;
        }
        showRoomStep(res.data);
      });
    });
  }

  function showRoomStep(event) {
    say(T.event_created + " #" + event.id, "ok");
    $("#event-form").hidden = true;
    var step = $("#room-step");
    step.hidden = false;
    var now = new Date();
    $("#rm-id").value = "ev" + event.id;
    $("#rm-opens").value = localInput(now);
    $("#rm-starts").value = localInput(new Date(now.getTime() + 10 * 60000));
    $("#dashboard-link").href = "/organizer/events/" + event.id;
    $("#rm-id").focus();
    $("#room-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var room = $("#rm-id").value.trim();
      var shop = location.origin + "/events/" + event.id;
      var body = {event_id: String(event.id), mode: $("#rm-mode").value, opens_at: utc($("#rm-opens").value),
                  starts_at: utc($("#rm-starts").value), rate_per_s: parseFloat($("#rm-rate").value),
                  max_active: parseInt($("#rm-max").value, 10), pow_difficulty: parseInt($("#rm-pow").value, 10) || 0,
                  stock_factor: parseFloat($("#rm-stock").value) || 1, shop_url: shop, title: event.title};
      var closes = utc($("#rm-closes").value);
      if (closes) body.closes_at = closes;
      api("PUT", "/organizer/api/rooms/" + encodeURIComponent(room), body).then(function (res) {
        if (!res.ok) { say(SD.tr("error_generic", {detail: SD.problemText(res)})); return; }
        say("");
        var url = document.body.getAttribute("data-waitingroom-url") + "/rooms/" + room;
        var link = $("#room-link");
        link.href = url;
        link.textContent = url;
        $("#room-done").hidden = false;
      });
    });
  }

  // ---------------------------------------------------------------- dashboard
  function lastHour(points) {  // the API lists minutes with orders only: lay them on a 60-minute axis
    var byMinute = {};
    points.forEach(function (p) {
      var key = new Date(p.at).toISOString().slice(0, 16);
      byMinute[key] = (byMinute[key] || 0) + p.orders;
    });
    var out = [], now = Date.now();
    for (var i = 59; i >= 0; i--) {
      var key = new Date(now - i * 60000).toISOString().slice(0, 16);
      out.push({at: key, orders: byMinute[key] || 0});
    }
    return out;
  }

  function showFunnel(s) {  // the dashboard counters (orders, refunds, failures...) and how fresh they are
    var f = s.funnel;
    if (f) {
      $("#fn-orders").textContent = f.orders;
      $("#fn-tickets").textContent = f.tickets;
      $("#fn-revenue").textContent = SD.money(f.revenue, s.currency);
      $("#fn-refunds").textContent = f.refunds + (f.refunds ? " (" + SD.money(f.refunded_amount, s.currency) + ")" : "");
      $("#fn-payment-failures").textContent = f.payment_failures;
      $("#fn-holds-expired").textContent = f.holds_expired;
      $("#fn-checkins").textContent = f.checkins;
    }
    var fresh = $("#counters-freshness");
    if (!s.counters_as_of) { fresh.textContent = T.counters_not_running; return; }
    var time = new Date(s.counters_as_of).toISOString().slice(11, 19) + " UTC";
    var lag = Math.round(s.counters_lag_seconds || 0);
    fresh.textContent = lag < 5 ? SD.tr("counters_fresh", {time: time}) : SD.tr("counters_behind", {time: time, lag: lag});
  }

  function drawChart(points) {
    points = lastHour(points);
    var svg = $("#chart"), ns = "http://www.w3.org/2000/svg";
    $all("rect, text", svg).forEach(function (n) { n.remove(); });
    var max = points.reduce(function (m, p) { return Math.max(m, p.orders); }, 0) || 1;
    var w = 600 / Math.max(points.length, 1);
    points.forEach(function (p, i) {
      var h = Math.round(130 * p.orders / max);
      var rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(i * w + 1)); rect.setAttribute("y", String(140 - h));
      rect.setAttribute("width", String(Math.max(w - 2, 1))); rect.setAttribute("height", String(h));
      var title = document.createElementNS(ns, "title");
      title.textContent = p.at + ": " + p.orders;
      rect.appendChild(title);
      svg.appendChild(rect);
    });
    var label = document.createElementNS(ns, "text");
    label.setAttribute("x", "2"); label.setAttribute("y", "155");
    label.textContent = "max " + max + "/min";
    svg.appendChild(label);
    var total = points.reduce(function (a, p) { return a + p.orders; }, 0);
    if (!total) {
      var empty = document.createElementNS(ns, "text");
      empty.setAttribute("x", "300"); empty.setAttribute("y", "80"); empty.setAttribute("text-anchor", "middle");
      empty.textContent = T.no_orders_yet;
      svg.appendChild(empty);
    }
    $("#chart-desc").textContent = total + " " + T.orders + ", max " + max + "/min";
  }

  function roomBody() {
    var body = {mode: $("#rm-mode").value, rate_per_s: parseFloat($("#rm-rate").value),
                max_active: parseInt($("#rm-max").value, 10), pow_difficulty: parseInt($("#rm-pow").value, 10) || 0,
                stock_factor: parseFloat($("#rm-stock").value) || 1};
    var opens = utc($("#rm-opens").value), starts = utc($("#rm-starts").value), closes = utc($("#rm-closes").value);
    if (opens) body.opens_at = opens;
    if (starts) body.starts_at = starts;
    if (closes) body.closes_at = closes;
    var title = $("#ed-title") && $("#ed-title").value.trim();
    if (title) body.title = title;  // the queue page names the sale by the event's title
    // automatic rate (docs/admission.md): rate_per_s is then where it starts, between the bounds
    body.rate_mode = $("#rm-rate-mode").value;
    var lo = $("#rm-rate-min").value, hi = $("#rm-rate-max").value;
    if (lo !== "") body.rate_min_per_s = parseFloat(lo);
    if (hi !== "") body.rate_max_per_s = parseFloat(hi);
    return body;
  }

  function fillRoom(cfg) {
    $("#rm-mode").value = cfg.mode;
    if (cfg.opens_at) $("#rm-opens").value = cfg.opens_at.slice(0, 16);
    if (cfg.starts_at) $("#rm-starts").value = cfg.starts_at.slice(0, 16);
    if (cfg.closes_at) $("#rm-closes").value = cfg.closes_at.slice(0, 16);
    $("#rm-rate").value = cfg.rate_per_s;
    $("#rm-max").value = cfg.max_active;
    $("#rm-pow").value = cfg.pow_difficulty;
    $("#rm-stock").value = cfg.stock_factor;
    $("#rm-rate-mode").value = cfg.rate_mode || "fixed";
    $("#rm-rate-min").value = cfg.rate_min_per_s === null || cfg.rate_min_per_s === undefined ? "" : cfg.rate_min_per_s;
    $("#rm-rate-max").value = cfg.rate_max_per_s === null || cfg.rate_max_per_s === undefined ? "" : cfg.rate_max_per_s;
    if (cfg.rate_current_per_s !== undefined) {
      $("#rm-rate-now").textContent = T.rate_now.replace("{rate}", cfg.rate_current_per_s.toFixed(2));
    }
  }

  function initDashboard() {
    if (!SD.requireSignIn()) return;
    var eventId = document.body.getAttribute("data-event-id");
    var room = document.body.getAttribute("data-room");
    api("GET", "/api/events/" + eventId).then(function (res) {
      if (!res.ok) return;
      $("#event-title").textContent = res.data.title + (res.data.status === "cancelled" ? " — " + T.event_cancelled : "");
      $("#ed-title").value = res.data.title;
      $("#ed-per-order").value = res.data.max_tickets_per_order;
      $("#ed-starts").value = res.data.starts_at.slice(0, 16);
      $("#ed-ends").value = res.data.ends_at.slice(0, 16);
    });
    $("#edit-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {title: $("#ed-title").value.trim(), max_tickets_per_order: parseInt($("#ed-per-order").value, 10),
                  starts_at: utc($("#ed-starts").value), ends_at: utc($("#ed-ends").value)};
      api("PATCH", "/api/events/" + eventId, body).then(function (res) {
        if (res.ok) { say(T.event_saved, "ok"); $("#event-title").textContent = res.data.title; }
        else say(SD.tr("error_generic", {detail: SD.problemText(res)}));
      });
    });
    if (room) api("GET", "/organizer/api/rooms/" + encodeURIComponent(room)).then(function (res) { if (res.ok) fillRoom(res.data); });
    $("#room-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var id = $("#rm-id").value.trim();
      var body = roomBody();
      var method = room ? "PATCH" : "PUT";
      if (!room) { body.event_id = String(eventId); body.shop_url = location.origin + "/events/" + eventId; }
      api(method, "/organizer/api/rooms/" + encodeURIComponent(id), body).then(function (res) {
        if (!res.ok) { say(SD.tr("error_generic", {detail: SD.problemText(res)})); return; }
        say(T.room_settings_saved, "ok");
        if (!room) { room = id; $("#rm-id").readOnly = true; }
        fillRoom(res.data);
      });
    });
    function poll() {
      var sales = api("GET", "/api/events/" + eventId + "/sales?bucket=minute&buckets=60").then(function (res) {
        if (!res.ok) { say(SD.tr("error_generic", {detail: SD.problemText(res)})); return; }
        var s = res.data;
        $("#st-sold").textContent = s.sold;
        $("#st-held").textContent = s.held === null ? "?" : s.held;
        $("#st-free").textContent = s.free === null ? "?" : s.free;
        $("#st-revenue").textContent = SD.money(s.revenue, s.currency);
        $("#st-orders").textContent = s.orders;
        showFunnel(s);
        drawChart(s.orders_over_time || []);
      });
      var stats = room ? api("GET", "/organizer/api/rooms/" + encodeURIComponent(room)).then(function (res) {
        if (!res.ok) return;
        $("#st-queue").textContent = res.data.waiting;
        $("#st-rate").textContent = res.data.admit_rate_observed.toFixed(2) + " / " + res.data.rate_per_s;
        $("#st-active").textContent = res.data.active;
      }) : Promise.resolve();
      Promise.all([sales, stats]).catch(function () {}).then(function () { setTimeout(poll, 2000); });
    }
    poll();
    $("#cancel").addEventListener("click", function () {
      if (!window.confirm(T.cancel_confirm)) return;
      api("DELETE", "/api/events/" + eventId).then(function (res) {
        if (res.ok) say(T.event_cancelled, "ok");
        else say(SD.tr("error_generic", {detail: SD.problemText(res)}));
      });
    });
  }

  // ---------------------------------------------------------------- start page: my events
  function initHome() {
    if (!SD.requireSignIn()) return;
    var body = $("#my-events-body"), more = $("#more-events"), filter = $("#status-filter");
    var wr = (document.body.getAttribute("data-waitingroom-url") || "").replace(/\/$/, "");
    var user = SD.session.user() || {};
    var cursor = null;
    if ((user.roles || []).indexOf("admin") >= 0) $("#my-events-scope").textContent = T.all_events_admin;

    function link(href, text) { return el("a", {href: href}, text); }
    function row(ev) {
      var tr = el("tr");
      var title = el("td");
      title.appendChild(link("/organizer/events/" + ev.id, ev.title));
      var sub = el("span", {"class": "cell-links muted"}, ev.venue + ", " + ev.city + " · ");
      sub.appendChild(link("/events/" + ev.id, T.open_shop_page));
      title.appendChild(sub);
      tr.appendChild(title);
      SD.eventCells(tr, ev);
      var room = el("td", {"data-label": T.room_title});
      if (ev.room) room.appendChild(link(wr + "/rooms/" + encodeURIComponent(ev.room), ev.room));
      else room.appendChild(el("span", {"class": "muted"}, T.no_room_short));
      tr.appendChild(room);
      return tr;
    }
    function load(reset) {
      var q = "?limit=25";
      if (filter.value) q += "&status=" + encodeURIComponent(filter.value);
      if (!reset && cursor) q += "&cursor=" + encodeURIComponent(cursor);
      more.disabled = true;
      api("GET", "/api/organizer/events" + q).then(function (res) {
        more.disabled = false;
        if (reset) body.textContent = "";
        if (!res.ok) { say(SD.tr("error_generic", {detail: SD.problemText(res)})); return; }
        res.data.items.forEach(function (ev) { body.appendChild(row(ev)); });
        if (!body.children.length) {
          var empty = el("tr"), td = el("td", {colspan: "6", "class": "muted"}, T.no_events_yet);
          empty.appendChild(td);
          body.appendChild(empty);
        }
        cursor = res.data.next_cursor;
        more.hidden = !cursor;
      });
    }
    filter.addEventListener("change", function () { cursor = null; load(true); });
    $("#my-events-filter").addEventListener("submit", function (ev) { ev.preventDefault(); });
    more.addEventListener("click", function () { load(false); });
    load(true);
  }

  // ---------------------------------------------------------------- check-in
  function initCheckin() {
    if (!SD.requireSignIn()) return;
    var form = $("#checkin-form"), code = $("#code");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/api/checkin", {code: code.value.trim()}).then(function (res) {
        if (res.status === 200) say(T.checkin_ok, "ok");
        else if (res.status === 409) say(T.checkin_again, "warn");
        else if (res.status === 404) say(T.checkin_unknown, "error");
        else say(SD.tr("error_generic", {detail: SD.problemText(res)}));
        code.value = "";
        code.focus();
      });
    });
  }

  var pages = {"organizer-home": initHome, "organizer-new": initBuilder, "organizer-event": initDashboard, "organizer-checkin": initCheckin};
  var init = pages[document.body.getAttribute("data-page")];
  if (init) init();
})();
