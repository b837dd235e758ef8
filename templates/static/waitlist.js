/*
 * stagedoor waiting list after sold out (docs/waitlist.md). Needs shop.js first (window.SD).
 * - event page of a sold-out event: join / leave the list, your place in line;
 * - "My offers": open offers with a countdown; Accept takes the held tickets into the checkout;
 * - organizer dashboard: the list's length and conversion.
 */
(function () {
  "use strict";

  var SD = window.SD;
  if (!SD) return;
  var T = SD.T, $ = SD.$, el = SD.el, api = SD.api, say = SD.say, tr = SD.tr;
  var OFFERS_POLL_MS = 3000;

  function initEvent() {
    var box = $("#waitlist");
    if (!box) return;
    var eventId = document.body.getAttribute("data-event-id");
    var path = "/api/events/" + encodeURIComponent(eventId) + "/waitlist";
    var status = $("#waitlist-status"), form = $("#waitlist-form"), leave = $("#waitlist-leave");

    function show(standing) {
      form.hidden = !!standing && (standing.state === "waiting" || standing.state === "offered");
      leave.hidden = !form.hidden;
      if (!standing || !form.hidden) { status.textContent = ""; return; }
      status.textContent = "";
      if (standing.state === "offered") {
        status.appendChild(el("a", {href: "/me/offers"}, T.waitlist_offered));
      } else {
        status.textContent = tr("waitlist_position", {position: standing.position, quantity: standing.quantity});
      }
    }

    function refresh() {
      api("GET", path).then(function (res) { show(res.ok ? res.data : null); });
    }

    if (!SD.session.token()) {
      var signin = $("#waitlist-signin");
      signin.hidden = false;
      signin.querySelector("a").href = "/signin?next=" + encodeURIComponent(location.pathname);
      return;
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var quantity = parseInt($("#waitlist-quantity").value, 10) || 1;
      api("POST", path, {quantity: quantity}).then(function (res) {
        if (res.status === 201) { say(tr("waitlist_joined", {position: res.data.position}), "ok"); refresh(); return; }
        if (res.status === 401) { SD.session.clear(); SD.requireSignIn(); return; }
        say(tr("error_generic", {detail: SD.problemText(res)}));
      });
    });
    leave.addEventListener("click", function () {
      api("DELETE", path).then(function (res) {
        if (res.status === 204) { say(T.waitlist_left, "ok"); show(null); return; }
        say(tr("error_generic", {detail: SD.problemText(res)}));
      });
    });
    refresh();
  }

  function countdown(node, expiresAt, onEnd) {
    var end = new Date(expiresAt).getTime();
    function tick() {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      var text = Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2);
      node.textContent = tr("offer_expires", {time: text});
      if (left <= 0) { onEnd(); return; }
      setTimeout(tick, 1000);
    }
    tick();
  }

  function offerCard(offer) {
    var li = el("li", {"class": "card offer", "data-offer": offer.id});
    var title = el("h2", {}, "…");
    li.appendChild(title);
    li.appendChild(el("p", {}, tr("offer_tickets", {quantity: offer.quantity})));
    var timer = el("p", {"class": "countdown", role: "timer"});
    li.appendChild(timer);
    var button = el("button", {type: "button", "class": "accept"},
                    offer.state === "accepted" ? T.offer_continue : T.offer_accept);
    li.appendChild(button);
    api("GET", "/api/events/" + encodeURIComponent(offer.event_id)).then(function (ev) {
      title.textContent = "";
      if (ev.ok) title.appendChild(el("a", {href: "/events/" + ev.data.id}, ev.data.title));
    });
    countdown(timer, offer.expires_at, function () { button.disabled = true; timer.textContent = T.offer_expired; });
    button.addEventListener("click", function () {
      button.disabled = true;
      api("POST", "/api/offers/" + encodeURIComponent(offer.id) + "/accept").then(function (res) {
        if (res.status === 201) { location.href = "/checkout/" + encodeURIComponent(res.data.hold_id); return; }
        say(tr("error_generic", {detail: SD.problemText(res)}));
      });
    });
    return li;
  }

  function initOffers() {
    if (!SD.requireSignIn()) return;
    var list = $("#offers");
    function load() {
      api("GET", "/api/users/me/offers").then(function (res) {
        if (!res.ok) { say(tr("error_generic", {detail: SD.problemText(res)})); return; }
        list.textContent = "";
        if (!res.data.items.length) {
          list.appendChild(el("li", {}, T.offers_none));
          setTimeout(load, OFFERS_POLL_MS);  // tickets may come back any moment
          return;
        }
        res.data.items.forEach(function (offer) { list.appendChild(offerCard(offer)); });
      });
    }
    load();
  }

  function initOrganizer() {
    var eventId = document.body.getAttribute("data-event-id");
    api("GET", "/api/events/" + encodeURIComponent(eventId) + "/waitlist/stats").then(function (res) {
      if (!res.ok) return;
      var s = res.data;
      $("#wl-length").textContent = String(s.length);
      $("#wl-open").textContent = String(s.offers_open);
      $("#wl-made").textContent = String(s.offers_made);
      $("#wl-accepted").textContent = String(s.offers_accepted);
      $("#wl-bought").textContent = String(s.offers_bought);
      $("#wl-conversion").textContent = s.conversion === null ? "–" : Math.round(s.conversion * 100) + " %";
    });
  }

  var pages = {event: initEvent, "my-offers": initOffers, "organizer-event": initOrganizer};
  var init = pages[document.body.getAttribute("data-page")];
  if (init) init();
})();
