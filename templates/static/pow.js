/*
 * stagedoor proof-of-work solver. No dependencies; load it as an external script (the CSP
 * forbids inline script):   <script src="/static/pow.js" defer></script>
 *
 *   const pow = await StagedoorPow.fetchAndSolve("/api/rooms/" + room + "/pow");
 *   // -> {challenge, nonce} or null when the room needs no proof of work
 *   fetch("/api/rooms/" + room + "/join", {method: "POST", headers: {"Content-Type": "application/json"},
 *         body: JSON.stringify(pow ? {pow: pow} : {})});
 *
 * No-JS-specific pages: see attach() at the end (a form with data-pow-url).
 *
 * Work: find a decimal nonce such that SHA-256(challenge + ":" + nonce) starts with
 * `difficulty` zero bits (stagedoor/pow.py checks the same). Hashes go through Web Crypto
 * (crypto.subtle.digest) in parallel batches; where Web Crypto is missing (plain http on a
 * host other than localhost is not a secure context) a small pure-JS SHA-256 is used.
 */
(function (global) {
  "use strict";

  var BATCH = 256;
  var encoder = new TextEncoder();

  function leadingZeroBits(bytes) {
    var bits = 0;
    for (var i = 0; i < bytes.length; i++) {
      var b = bytes[i];
      if (b === 0) { bits += 8; continue; }
      while ((b & 0x80) === 0) { bits += 1; b <<= 1; }
      return bits;
    }
    return bits;
  }

  // ---- fallback SHA-256 (FIPS 180-4), only used without Web Crypto
  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  var W = new Uint32Array(64);

  function sha256(msg) {
    var len = msg.length, total = ((len + 9 + 63) >> 6) << 6;
    var m = new Uint8Array(total);
    m.set(msg); m[len] = 0x80;
    var bitLen = len * 8;
    m[total - 4] = (bitLen >>> 24) & 0xff; m[total - 3] = (bitLen >>> 16) & 0xff;
    m[total - 2] = (bitLen >>> 8) & 0xff; m[total - 1] = bitLen & 0xff;
    var h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a,
        h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
    for (var off = 0; off < total; off += 64) {
      for (var t = 0; t < 16; t++) {
        var j = off + t * 4;
        W[t] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
      }
      for (t = 16; t < 64; t++) {
        var x = W[t - 15], y = W[t - 2];
        var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
      }
      var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
      for (t = 0; t < 64; t++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + W[t]) | 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
    }
    var out = new Uint8Array(32), hs = [h0, h1, h2, h3, h4, h5, h6, h7];
    for (var k = 0; k < 8; k++) {
      out[k * 4] = hs[k] >>> 24; out[k * 4 + 1] = (hs[k] >>> 16) & 0xff;
      out[k * 4 + 2] = (hs[k] >>> 8) & 0xff; out[k * 4 + 3] = hs[k] & 0xff;
    }
    return out;
  }

  function candidate(prefix, n) {
    var digits = encoder.encode(String(n));
    var buf = new Uint8Array(prefix.length + digits.length);
    buf.set(prefix); buf.set(digits, prefix.length);
    return buf;
  }

  function subtle() {
    var c = global.crypto;
    return c && c.subtle && typeof c.subtle.digest === "function" ? c.subtle : null;
  }

  /*
   * solve(challenge, difficulty, options) -> Promise<string nonce>
   * options: {signal: AbortSignal, onProgress: function(hashesTried), useWebCrypto: bool}
   */
  async function solve(challenge, difficulty, options) {
    options = options || {};
    var prefix = encoder.encode(challenge + ":");
    var webCrypto = options.useWebCrypto === false ? null : subtle();
    var lastYield = Date.now();
    for (var start = 0; start < Number.MAX_SAFE_INTEGER; start += BATCH) {
      if (options.signal && options.signal.aborted) { throw new Error("proof of work aborted"); }
      var digests = [];
      for (var n = start; n < start + BATCH; n++) {
        var data = candidate(prefix, n);
        digests.push(webCrypto ? webCrypto.digest("SHA-256", data) : sha256(data));
      }
      if (webCrypto) { digests = await Promise.all(digests); }
      for (var i = 0; i < digests.length; i++) {
        if (leadingZeroBits(new Uint8Array(digests[i])) >= difficulty) { return String(start + i); }
      }
      if (options.onProgress) { options.onProgress(start + BATCH); }
      if (!webCrypto && Date.now() - lastYield > 40) {  // keep the page responsive without paying
        await new Promise(function (r) { setTimeout(r, 0); });  // a (clamped) timer per batch
        lastYield = Date.now();
      }
    }
    throw new Error("no proof-of-work solution found");
  }

  /* GET the room's challenge and solve it; resolves to {challenge, nonce}, or null when off. */
  async function fetchAndSolve(url, options) {
    var resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    if (resp.status >= 500) { throw new Error("proof-of-work challenge: HTTP " + resp.status); }
    if (!resp.ok) { return null; }  // no challenge for this room (404/409...): join without one
    var ch = await resp.json();
    if (!ch || !ch.challenge || !ch.difficulty) { return null; }
    var nonce = await solve(ch.challenge, ch.difficulty, options);
    return {challenge: ch.challenge, nonce: nonce};
  }

  /*
   * Forms without page-specific script: <form method="post" data-pow-url="/api/rooms/ROOM/pow">
   * with <input type="hidden" name="pow_challenge"> and <input type="hidden" name="pow_nonce">.
   * On submit the challenge is fetched and solved, the two fields are filled, and the form is
   * submitted for real; an element with data-pow-status inside the form shows progress.
   */
  function attach(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.powSolved === "1") { return; }
      event.preventDefault();
      var status = form.querySelector("[data-pow-status]");
      if (status) { status.textContent = "Checking your browser..."; }
      fetchAndSolve(form.dataset.powUrl).then(function (pow) {
        if (pow) {
          form.elements.pow_challenge.value = pow.challenge;
          form.elements.pow_nonce.value = pow.nonce;
        }
        form.dataset.powSolved = "1";
        form.submit();
      }).catch(function () {
        if (status) { status.textContent = "Could not prepare your place; please try again."; }
      });
    });
  }

  function attachAll() {
    if (typeof document === "undefined") { return; }
    var forms = document.querySelectorAll("form[data-pow-url]");
    for (var i = 0; i < forms.length; i++) { attach(forms[i]); }
  }

  if (typeof document !== "undefined") {
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", attachAll); }
    else { attachAll(); }
  }

  global.StagedoorPow = {solve: solve, fetchAndSolve: fetchAndSolve, attach: attach, sha256: sha256,
                         leadingZeroBits: leadingZeroBits};
})(typeof window !== "undefined" ? window : globalThis);
