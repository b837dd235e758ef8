/*
 * stagedoor shop pages: no dependencies, no build step, no inline script (CSP).
 * The page kind is <body data-page="...">; strings come from the JSON block #sd-strings.
 *
 * Tokens: the user's access token lives in sessionStorage (this tab only, gone when it closes).
 * The waiting room hands the admission token over in the URL fragment (#admission_token=...),
 * which is never sent to a server; this script reads it, removes it from the address bar at
 * once (history.replaceState) and keeps it in sessionStorage per event, sending it only as the
 * X-Admission-Token header of hold requests.
 */
(function () {
  "use strict";

  var T = JSON.parse(document.getElementById("sd-strings").textContent);
  var TOKEN_KEY = "sd_access_token";
  var USER_KEY = "sd_user";
  var POLL_MS = 2000;

  function tr(key, values) {
    var text = T[key] || key;
    Object.keys(values || {}).forEach(function (k) { text = text.split("{" + k + "}").join(String(values[k])); });
    return text;
  }

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function money(amount, currency) {  // the same shape as the server-rendered prices
    var fixed = (amount / 100).toFixed(2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return fixed + " " + currency;
  }

  function utcDate(iso) {  // "Mon, 01 Mar 2027, 19:00 UTC", like the server-rendered dates
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var parts = d.toUTCString().split(" ");  // ["Mon,", "01", "Mar", "2027", "19:00:00", "GMT"]
    return parts.slice(0, 4).join(" ") + ", " + parts[4].slice(0, 5) + " UTC";
  }

  // ---------------------------------------------------------------- session
  var session = {
    token: function () { return sessionStorage.getItem(TOKEN_KEY); },
    user: function () { try { return JSON.parse(sessionStorage.getItem(USER_KEY) || "null"); } catch (e) { return null; } },
    set: function (token, user) {
      sessionStorage.setItem(TOKEN_KEY, token);
      if (user) sessionStorage.setItem(USER_KEY, JSON.stringify(user));
    },
    clear: function () { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(USER_KEY); },
    admission: function (eventId) {
      var raw = sessionStorage.getItem("sd_admission_" + eventId);
      if (!raw) return null;
      try {
        var v = JSON.parse(raw);
        if (v.exp && v.exp * 1000 < Date.now()) { sessionStorage.removeItem("sd_admission_" + eventId); return null; }
        return v;
      } catch (e) { return null; }
    }
  };

  function decodeJwtPayload(token) {
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      return JSON.parse(atob(part));
    } catch (e) { return null; }
  }

  // ---------------------------------------------------------------- API
  function api(method, path, body, extraHeaders) {
    var headers = {"Accept": "application/json"};
    var token = session.token();
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined && body !== null) headers["Content-Type"] = "application/json";
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(path, {method: method, headers: headers, credentials: "same-origin",
                        body: body === undefined || body === null ? undefined : JSON.stringify(body)})
      .then(function (res) {
        if (res.status === 401 && token && path.indexOf("/api/") === 0) {
          // The access token expired or was revoked: sign in again and come back here.
          session.clear();
          location.href = "/signin?next=" + encodeURIComponent(location.pathname);
        }
        var ctype = res.headers.get("Content-Type") || "";
        var parse = ctype.indexOf("json") >= 0 ? res.json() : res.text();
        return parse.then(function (data) { return {status: res.status, ok: res.ok, data: data, headers: res.headers}; },
                          function () { return {status: res.status, ok: res.ok, data: null, headers: res.headers}; });
      });
  }

  function problemText(res) {
    var d = res && res.data;
    if (d && typeof d === "object") return d.detail || d.title || d.error_description || ("HTTP " + res.status);
    return "HTTP " + (res ? res.status : "?");
  }

  function say(text, kind) {
    var box = $("#messages");
    if (!box) return;
    box.textContent = "";
    if (!text) return;
    box.appendChild(el("p", {"class": "banner " + (kind || "error")}, text));
  }

  function requireSignIn() {
    if (session.token()) return true;
    location.href = "/signin?next=" + encodeURIComponent(location.pathname);
    return false;
  }

  // Where to go after signing in or up: a path on this origin, else "/". "next" comes from the
  // address bar, so anyone can write it, and a URL parser forgives a lot: "/%09/evil.example"
  // (tabs and newlines are dropped, leaving "//evil.example"), "/\evil.example" (a backslash is
  // a slash), "https://evil.example", "javascript:...". So: no control characters, no
  // backslashes, no "//" start, and the parsed URL must still be on our origin with a path
  // that does not start with "//" (dot segments: "/.//evil.example" parses to "//evil.example").
  function safeNext() {
    var next = new URLSearchParams(location.search).get("next");
    if (!next || next.charAt(0) !== "/" || next.charAt(1) === "/" || /[\u0000-\u001f\u007f-\u009f\\]/.test(next)) {
      return "/";
    }
    var url;
    try { url = new URL(next, location.origin); } catch (e) { return "/"; }
    if (url.origin !== location.origin || url.pathname.indexOf("//") === 0) return "/";
    return url.pathname + url.search + url.hash;
  }

  // ---------------------------------------------------------------- header
  function initHeader() {
    var user = session.user();
    var signedIn = !!session.token();
    $all("[data-signed-out]").forEach(function (n) { n.hidden = signedIn; });
    $all("[data-signed-in]").forEach(function (n) { n.hidden = !signedIn; });
    var roles = (user && user.roles) || [];
    $all("[data-role-link]").forEach(function (n) {
      n.hidden = !(roles.indexOf(n.getAttribute("data-role-link")) >= 0 || roles.indexOf("admin") >= 0);
    });
    if (signedIn && user && $("#whoami")) $("#whoami").textContent = tr("signed_in_as", {name: user.name || user.email});
    var out = $("#signout");
    if (out) out.addEventListener("click", function () { session.clear(); location.href = "/"; });
    var next = safeNext();  // passed on to the other sign-in page only when it would be followed
    $all("[data-keep-next]").forEach(function (a) {
      if (next !== "/") a.href = a.getAttribute("href") + "?next=" + encodeURIComponent(next);
    });
  }

  // ---------------------------------------------------------------- sign in / up
  function signIn(email, password) {
    var form = new URLSearchParams({grant_type: "password", username: email, password: password});
    return fetch("/oauth/token", {method: "POST", body: form, credentials: "omit",
                                  headers: {"Content-Type": "application/x-www-form-urlencoded"}})
      .then(function (res) { return res.json().then(function (d) { return {ok: res.ok, status: res.status, data: d}; }); })
      .then(function (res) {
        if (!res.ok) throw new Error(res.status === 429 ? problemText(res) : T.signin_failed);
        session.set(res.data.access_token, null);
        return api("GET", "/api/users/me").then(function (me) {
          if (me.ok) session.set(res.data.access_token, {id: me.data.id, name: me.data.name, email: me.data.email,
                                                          roles: me.data.roles || []});
        });
      });
  }

  function initSignIn() {
    $("#signin-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      say("");
      signIn($("#email").value.trim(), $("#password").value)
        .then(function () { location.href = safeNext(); })
        .catch(function (err) { say(err.message); });
    });
  }

  function initSignUp() {
    $("#signup-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      say("");
      var email = $("#email").value.trim(), password = $("#password").value;
      api("POST", "/api/users", {email: email, password: password, name: $("#name").value.trim()})
        .then(function (res) {
          if (!res.ok) {
            var detail = problemText(res);
            if (res.data && res.data.errors) detail += " " + res.data.errors.map(function (e) { return e.message; }).join("; ");
            throw new Error(detail);
          }
          return signIn(email, password);
        })
        .then(function () { location.href = safeNext(); })
        .catch(function (err) { say(err.message); });
    });
  }

  // ---------------------------------------------------------------- event page
  function takeAdmissionFromFragment(eventId) {
    if (!location.hash || location.hash.indexOf("admission_token=") < 0) return;
    var params = new URLSearchParams(location.hash.slice(1));
    var token = params.get("admission_token");
    history.replaceState(null, "", location.pathname + location.search);  // out of the address bar and history
    if (!token) return;
    var claims = decodeJwtPayload(token) || {};
    if (claims.event_id && String(claims.event_id) !== String(eventId)) return;
    sessionStorage.setItem("sd_admission_" + eventId, JSON.stringify({token: token, exp: claims.exp || 0}));
  }

  function initEvent() {
    var body = document.body;
    var eventId = body.getAttribute("data-event-id");
    var maxPerOrder = parseInt(body.getAttribute("data-max-per-order"), 10) || 1;
    var gated = !!body.getAttribute("data-room");
    takeAdmissionFromFragment(eventId);
    var admission = session.admission(eventId);
    if (gated) {
      if (admission) {
        var banner = $("#admission-banner");
        banner.hidden = false;
        banner.className = "banner ok";
        banner.textContent = tr("admission_ok", {time: new Date(admission.exp * 1000).toLocaleTimeString()});
      } else {
        $("#queue-needed").hidden = false;
      }
    }

    var selected = [];
    var seats = {};
    $all(".seat").forEach(function (g) { seats[g.getAttribute("data-seat")] = g; });
    var holdButton = $("#hold");

    function gaRequest() {
      var tier = null, qty = 0;
      $all("[data-ga-tier]").forEach(function (input) {
        var n = parseInt(input.value, 10) || 0;
        if (n > 0 && !tier) { tier = input.getAttribute("data-ga-tier"); qty = n; }
      });
      return tier ? {tier: tier, quantity: Math.min(qty, maxPerOrder)} : null;
    }

    function render() {
      var text;
      var ga = gaRequest();
      if (selected.length) {
        text = selected.map(function (id) { return seats[id].getAttribute("data-label"); }).join("; ");
      } else if (ga) {
        text = ga.quantity + " × " + ga.tier;
      } else {
        text = T.nothing_selected;
      }
      $("#selection").textContent = text;
      holdButton.disabled = !(selected.length || ga);
    }

    function setState(g, state) {
      g.classList.remove("free", "held", "sold");
      g.classList.add(state);
      var label = g.getAttribute("data-label") + ", " + g.getAttribute("data-tier") + ", " + state;
      g.setAttribute("aria-label", label);
      g.setAttribute("aria-disabled", state === "free" ? "false" : "true");
      g.setAttribute("tabindex", state === "free" ? "0" : "-1");
      if (state !== "free") {
        var i = selected.indexOf(g.getAttribute("data-seat"));
        if (i >= 0) { selected.splice(i, 1); g.classList.remove("selected"); g.setAttribute("aria-checked", "false"); }
      }
    }

    function toggle(g) {
      var id = g.getAttribute("data-seat");
      if (!g.classList.contains("free")) return;
      var i = selected.indexOf(id);
      if (i >= 0) {
        selected.splice(i, 1);
        g.classList.remove("selected");
        g.setAttribute("aria-checked", "false");
      } else {
        if (selected.length >= maxPerOrder) { say(tr("limit_reached", {n: maxPerOrder}), "warn"); return; }
        selected.push(id);
        g.classList.add("selected");
        g.setAttribute("aria-checked", "true");
      }
      say("");
      render();
    }

    var map = $("#seatmap");
    if (map) {
      map.addEventListener("click", function (ev) {
        var g = ev.target.closest && ev.target.closest(".seat");
        if (g) toggle(g);
      });
      map.addEventListener("keydown", function (ev) {
        var g = ev.target.closest && ev.target.closest(".seat");
        if (g && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(g); }
      });
      var poll = function () {
        api("GET", "/api/events/" + eventId + "/seats").then(function (res) {
          if (!res.ok) return;
          var freeByTier = {};
          res.data.seats.forEach(function (s) {
            var g = seats[s.id];
            if (g && !g.classList.contains(s.state)) setState(g, s.state);
            freeByTier[s.tier] = (freeByTier[s.tier] || 0) + (s.state === "free" ? 1 : 0);
          });
          Object.keys(freeByTier).forEach(function (tier) {
            var n = document.querySelector('[data-tier-available="' + tier + '"]');
            if (n) n.textContent = String(freeByTier[tier]);
          });
          render();
        }).catch(function () { /* offline for a moment: try again at the next tick */ })
          .then(function () { setTimeout(poll, document.hidden ? POLL_MS * 3 : POLL_MS); });
      };
      setTimeout(poll, POLL_MS);
    }
    $all("[data-ga-tier]").forEach(function (input) { input.addEventListener("input", render); });

    holdButton.addEventListener("click", function () {
      if (!session.token()) { say(T.hold_need_signin, "warn"); requireSignIn(); return; }
      var request = selected.length ? {seats: selected.slice()} : gaRequest();
      if (!request) return;
      var headers = {};
      var adm = session.admission(eventId);
      if (adm) headers["X-Admission-Token"] = adm.token;
      holdButton.disabled = true;
      api("POST", "/api/events/" + eventId + "/holds", request, headers).then(function (res) {
        if (res.status === 201) { location.href = "/checkout/" + encodeURIComponent(res.data.hold_id); return; }
        if (res.status === 401) { session.clear(); requireSignIn(); return; }
        if (res.status === 409 && res.data && res.data.conflicts && res.data.conflicts.length) {
          var names = res.data.conflicts.map(function (id) {
            if (seats[id]) { setState(seats[id], "held"); return seats[id].getAttribute("data-label"); }
            return id;
          });
          say(tr("hold_conflict", {seats: names.join("; ")}));
        } else if (res.status === 409) {
          say(problemText(res) + " " + (res.data && res.data.hold_id ? "" : T.hold_existing));
        } else if (res.status === 403 && gated) {
          say(T.hold_need_admission, "warn");
          $("#queue-needed").hidden = false;
        } else {
          say(tr("error_generic", {detail: problemText(res)}));
        }
        render();
      }).catch(function (err) { say(tr("error_generic", {detail: err.message})); render(); });
    });
    render();
  }

  // Seat ids -> "Section, row R, seat N" in the elements matching selector (data-seat="id").
  function nameSeats(eventId, selector, prefix) {
    api("GET", "/api/events/" + encodeURIComponent(eventId) + "/seats").then(function (r) {
      if (!r.ok) return;
      var names = {};
      r.data.seats.forEach(function (s) { names[s.id] = s.section + ", row " + s.row + ", seat " + s.number; });
      $all(selector).forEach(function (node) {
        var id = node.getAttribute("data-seat");
        if (names[id]) node.textContent = prefix + names[id];
      });
    });
  }

  // ---------------------------------------------------------------- checkout
  function newIdempotencyKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // The card field, by the gateway the server names (<body data-gateway>):
  // - "mock": the select of test tokens; payment() gives {method: "card", token: "tok_..."}.
  // - "stripe": a Stripe Elements card element (Stripe.js is loaded by the page before this script);
  //   payment() makes a PaymentMethod from it (stripe.createPaymentMethod) and gives
  //   {method: "card", payment_method: "pm_..."}; authenticate(clientSecret) runs the bank's 3-D Secure
  //   step (stripe.handleNextAction) when the purchase answers 202.
  // payment() rejects with an error whose message is for the fan (err.forFan) when there is no card to charge.
  function mockCardField() {
    return {
      payment: function () { return Promise.resolve({method: "card", token: $("#card").value}); },
      authenticate: null,
      focus: function () { $("#card").focus(); }
    };
  }

  function stripeCardField(publishableKey) {
    var box = $("#card-element");
    var errors = $("#card-errors");
    var stripe = null, card = null;
    if (typeof window.Stripe === "function" && publishableKey) {
      try {
        stripe = window.Stripe(publishableKey);
        card = stripe.elements().create("card");
        box.textContent = "";
        card.mount(box);
        card.on("change", function (ev) { errors.textContent = ev && ev.error ? ev.error.message : ""; });
      } catch (e) { stripe = card = null; }
    }
    if (!card) box.textContent = T.card_unavailable;
    function refused(message) {
      var err = new Error(message || T.card_unavailable);
      err.forFan = true;
      return err;
    }
    return {
      payment: function () {
        if (!card) return Promise.reject(refused(T.card_unavailable));
        return stripe.createPaymentMethod({type: "card", card: card}).then(function (result) {
          if (!result || result.error || !result.paymentMethod) throw refused(result && result.error && result.error.message);
          return {method: "card", payment_method: result.paymentMethod.id};
        });
      },
      authenticate: function (clientSecret) {
        // The outcome is the server's to tell (the purchase is repeated either way): Stripe.js's own
        // answer, success or error, only ends the bank's step.
        return Promise.resolve().then(function () { return stripe.handleNextAction({clientSecret: clientSecret}); });
      },
      focus: function () { if (card && typeof card.focus === "function") card.focus(); }
    };
  }

  function initCheckout() {
    if (!requireSignIn()) return;
    var holdId = document.body.getAttribute("data-hold-id");
    var expiresAt = 0, timer = null, eventId = null;
    // A purchase to send again exactly as it was (same Idempotency-Key, same body): one whose answer was
    // lost (a network error), or one the bank's 3-D Secure step interrupted (202). Sending it again
    // replays or continues it and never charges twice; a refused purchase is retried with a new key.
    var pending = null;
    var form = $("#pay-form");
    var payBtn = $("#pay");
    var field = document.body.getAttribute("data-gateway") === "stripe"
      ? stripeCardField(document.body.getAttribute("data-stripe-key")) : mockCardField();
    var user = session.user();
    if (user && user.email) $("#email").value = user.email;

    function step(text) { $("#payment-step").textContent = text || ""; }

    function expired() {
      clearInterval(timer);
      $("#countdown").textContent = "0:00";
      form.hidden = true;
      step("");
      say(T.hold_expired);
      $("#back").hidden = false;
    }

    function tick() {
      var left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
      $("#countdown").textContent = Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2);
      if (left <= 0) expired();
    }

    api("GET", "/api/holds/" + encodeURIComponent(holdId)).then(function (res) {
      if (!res.ok) { say(tr("error_generic", {detail: problemText(res)})); form.hidden = true; return; }
      var hold = res.data;
      eventId = hold.event_id;
      $("#back-link").href = "/events/" + eventId;
      var tbody = $("#items tbody");
      hold.items.forEach(function (item) {
        var tr_ = el("tr");
        var seatCell = el("td", {"data-seat": item.seat || ""}, item.seat || T.ga_title);
        tr_.appendChild(seatCell);
        tr_.appendChild(el("td", {}, item.tier));
        tr_.appendChild(el("td", {}, money(item.price, hold.currency)));
        tbody.appendChild(tr_);
      });
      $("#total").textContent = money(hold.total, hold.currency);
      if (hold.seats && hold.seats.length) nameSeats(eventId, "#items td[data-seat]", "");
      expiresAt = Date.parse(hold.expires_at);
      if (hold.state && hold.state !== "held" && hold.state !== "locked") { expired(); return; }
      tick();
      timer = setInterval(tick, 1000);
    });

    // POST the purchase; a 202 runs the bank's step once, then the same request is sent again.
    function send(attempt, afterBankStep) {
      var headers = {"Idempotency-Key": attempt.key};
      var adm = eventId ? session.admission(eventId) : null;
      if (adm) headers["X-Admission-Token"] = adm.token;  // gated events check it again at purchase
      pending = attempt;  // until an answer says otherwise
      return api("POST", "/api/holds/" + encodeURIComponent(holdId) + "/purchase", attempt.body, headers)
        .then(function (res) {
          if (res.status === 201) {
            pending = null;
            clearInterval(timer);
            location.href = "/orders/" + encodeURIComponent(res.data.order_id);
            return;
          }
          if (res.status === 202) {
            attempt.bankStep = true;  // from now on the same request continues this payment at the bank
            var secret = res.data && res.data.client_secret;
            if (afterBankStep || !secret || !field.authenticate) { step(""); say(T.bank_check_unfinished, "warn"); return; }
            step(T.bank_check);
            var again = function () { step(T.bank_check_sent); return send(attempt, true); };
            return field.authenticate(secret).then(again, again);
          }
          step("");
          if (attempt.bankStep && (res.status === 409 || res.status === 502 || res.status === 503)) {
            say(T.payment_unavailable);  // kept pending: the same request continues the payment
            return;
          }
          pending = null;  // refused: another try goes under a new key
          if (res.status === 402) say(attempt.bankStep ? T.payment_not_authenticated : T.payment_declined);
          else if (res.status === 410) expired();
          else if (res.status === 502 || res.status === 503) say(T.payment_unavailable);
          else if (res.status === 403 && !adm) say(T.hold_need_admission, "warn");
          else say(tr("error_generic", {detail: problemText(res)}));
          if (res.status === 402) field.focus();
        });
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (payBtn.disabled) return;
      say("");
      payBtn.disabled = true;
      payBtn.textContent = T.paying;
      var attempt = pending ? Promise.resolve(pending) : field.payment().then(function (payment) {
        var body = {payment: payment, email: $("#email").value.trim()};
        var code = $("#discount").value.trim();
        if (code) body.discount_code = code;
        return {key: newIdempotencyKey(), body: body, bankStep: false};
      });
      attempt.then(function (a) { return send(a, false); })
        .catch(function (err) {
          step("");
          if (err.forFan) { say(err.message); field.focus(); } else say(tr("error_generic", {detail: err.message}));
        })
        .then(function () { payBtn.disabled = false; payBtn.textContent = T.pay_button; });
    });

    $("#release").addEventListener("click", function () {
      api("DELETE", "/api/holds/" + encodeURIComponent(holdId)).then(function () {
        location.href = eventId ? "/events/" + eventId : "/";
      });
    });
  }

  // ---------------------------------------------------------------- order / tickets
  function loadQr(img, ticketId) {
    // The QR endpoint needs the bearer token, so <img src> cannot fetch it: fetch, then a data: URL.
    fetch("/api/tickets/" + encodeURIComponent(ticketId) + "/qr.svg",
          {headers: {"Authorization": "Bearer " + session.token()}})
      .then(function (res) { if (!res.ok) throw new Error("HTTP " + res.status); return res.text(); })
      .then(function (svg) { img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg); })
      .catch(function () { img.alt = img.alt + " (not available)"; });
  }

  function initOrder() {
    if (!requireSignIn()) return;
    var orderId = document.body.getAttribute("data-order-id");
    api("GET", "/api/orders/" + encodeURIComponent(orderId)).then(function (res) {
      if (!res.ok) { say(tr("error_generic", {detail: problemText(res)})); return; }
      var order = res.data;
      if (order.status === "confirmed") $("#order-status").hidden = false;
      $("#order-total").textContent = T.total + ": " + money(order.total, order.currency) +
        (order.discount ? " (" + T.discount + " " + money(order.discount, order.currency) + ")" : "");
      var list = $("#tickets");
      order.tickets.forEach(function (ticket, i) {
        var li = el("li", {"class": "ticket", "data-ticket-id": ticket.id});
        li.appendChild(el("h2", {}, T.ticket + " " + (i + 1)));
        var img = el("img", {alt: tr("qr_alt", {n: i + 1}), width: "220", height: "220"});
        li.appendChild(img);
        if (ticket.seat) li.appendChild(el("p", {"class": "seat-name", "data-seat": ticket.seat}, T.ticket_seat + " " + ticket.seat));
        li.appendChild(el("p", {}, T.ticket_tier + " " + ticket.tier));
        var code = el("details", {"class": "ticket-code"});  // the QR carries it; the text is for support
        code.appendChild(el("summary", {}, T.ticket_code));
        code.appendChild(el("code", {}, ticket.code));
        li.appendChild(code);
        list.appendChild(li);
        loadQr(img, ticket.id);
      });
      nameSeats(order.event_id, "#tickets [data-seat]", "");
      api("GET", "/api/events/" + encodeURIComponent(order.event_id)).then(function (ev) {
        if (!ev.ok) return;
        var link = el("a", {href: "/events/" + ev.data.id}, ev.data.title);
        var when = utcDate(ev.data.starts_at);
        $("#order-event").textContent = "";
        $("#order-event").appendChild(link);
        $("#order-event").appendChild(document.createTextNode(" · " + when + " · " + ev.data.venue.name + ", " + ev.data.venue.city));
      });
    });
  }

  function initMyOrders() {
    if (!requireSignIn()) return;
    var cursor = null;
    var more = $("#more");
    function load() {
      var path = "/api/users/me/orders?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      api("GET", path).then(function (res) {
        if (!res.ok) { say(tr("error_generic", {detail: problemText(res)})); return; }
        var list = $("#orders");
        if (!res.data.items.length && !cursor) list.appendChild(el("li", {}, T.no_orders));
        res.data.items.forEach(function (o) {
          var li = el("li", {"class": "card"});
          var h = el("h2");
          h.appendChild(el("a", {href: "/orders/" + encodeURIComponent(o.id)}, o.event_title));
          li.appendChild(h);
          li.appendChild(el("p", {"class": "muted"}, utcDate(o.event_starts_at)));
          li.appendChild(el("p", {}, o.tickets + " × " + T.ticket + " · " + money(o.total, o.currency) + " · " + o.status));
          list.appendChild(li);
        });
        cursor = res.data.next_cursor;
        more.hidden = !cursor;
      });
    }
    more.addEventListener("click", load);
    load();
  }

  // The cells every event table shares (organizer "my events", admin console report): status, date,
  // sold, free; each with its data-label so the row reads as a card on a phone.
  function eventCells(tr, ev) {
    var st = el("td", {"data-label": T.event_status});
    st.appendChild(el("span", {"class": "status " + ev.status}, T["status_" + ev.status] || ev.status));
    tr.appendChild(st);
    tr.appendChild(el("td", {"data-label": T.col_date}, ev.starts_at.slice(0, 16).replace("T", " ")));
    tr.appendChild(el("td", {"class": "num", "data-label": T.sold}, String(ev.sold)));
    tr.appendChild(el("td", {"class": "num", "data-label": T.free}, String(ev.free)));
  }

  window.SD = {T: T, tr: tr, api: api, say: say, el: el, $: $, $all: $all, money: money, session: session,
               problemText: problemText, requireSignIn: requireSignIn, eventCells: eventCells};

  var pages = {signin: initSignIn, signup: initSignUp, event: initEvent, checkout: initCheckout,
               order: initOrder, "my-orders": initMyOrders};
  initHeader();
  var init = pages[document.body.getAttribute("data-page")];
  if (init) init();
})();
