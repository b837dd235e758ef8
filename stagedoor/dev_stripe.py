"""A local Stripe test server: the PyPI package ``localstripe`` (a stateful fake of Stripe's API)
in a child process on a loopback port, for ``stagedoor up`` with ``STAGEDOOR_PAYMENT_GATEWAY=stripe``
and no ``STAGEDOOR_STRIPE_API_BASE``, and for the tests of the Stripe adapter.

``python -m stagedoor.dev_stripe --port 0 --port-file F [--store S]`` serves localstripe's own
aiohttp app rather than its ``localstripe`` command, which would listen on every interface (``::``)
and pickle its whole store to one fixed file, ``/tmp/localstripe.pickle``, after every write (two
servers on one machine would overwrite each other's store, and each write costs time growing
with the store). Here the server listens on 127.0.0.1 only, the port it got is written to ``F``
once it listens, and the store lives in memory for the life of the process, or is kept in ``S``
(``stagedoor up``: the laptop's test payments survive a restart, as its database does). One parameter of
Stripe's current API that localstripe predates is taught to it here:
``allowed_payment_method_types`` on PaymentIntents (Stripe API 2026-07-29 and later; the
``payment_method_types`` it replaces is refused from 2026-09-30 on, and the SDK we pin speaks
2026-10-28), read as the ``payment_method_types`` localstripe knows.

So that the checkout page can pay from a browser here (it calls Stripe.js's ``createPaymentMethod``
and ``handleNextAction``), two things the page needs are added to the server, and only here:

- its Stripe.js stand-in (``/js.stripe.com/v3/``) is served with ``STAND_IN_COMPLETION`` appended:
  ``createPaymentMethod`` (which does nothing in the stand-in) posts the card element's fields to
  ``/v1/payment_methods`` with the publishable key, as Stripe.js does with Stripe, and
  ``handleNextAction`` (which the stand-in lacks) is the stand-in's own ``confirmCardPayment``: its
  3-D Secure dialog, then localstripe's ``_authenticate``, the bank's step there;
- ``POST /v1/payment_methods`` accepts a publishable key (``pk_...`` as ``key`` in the body, the way
  localstripe already takes it for tokens and ``_authenticate``) to create a ``card`` PaymentMethod.
  Every other route and method, and any other PaymentMethod, still needs the secret key.

What localstripe does and does not implement is in docs/payments.md ("The local Stripe server").
The package is a development dependency (the ``embedded`` extra), never in the production image.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagedoor.payment_pages import STAND_IN_PATH  # where localstripe serves its Stripe.js stand-in

# Appended to localstripe's Stripe.js stand-in (localstripe/localstripe-v3.js, which sets the global
# ``Stripe`` and ``LOCALSTRIPE_BASE_API``, the server's URL): what the checkout page calls on Stripe.js
# that the stand-in lacks. The card element's ``value.card`` is {number, exp_month, exp_year, cvc}.
STAND_IN_COMPLETION = r"""
/* Added by stagedoor's local Stripe server (stagedoor/dev_stripe.py): the Stripe.js calls the
   checkout page makes that this stand-in lacks. Development and tests only. */
(function () {
  var standIn = Stripe;
  Stripe = function (publishableKey) {
    var stripe = standIn(publishableKey);
    stripe.createPaymentMethod = async function (data) {
      var value = data && data.card && data.card.value && data.card.value.card;
      if (!value || !value.number) {
        return {error: {type: "validation_error", message: "Your card number is incomplete."}};
      }
      var card = Object.assign({}, value, {number: String(value.number).replace(/\s+/g, "")});
      try {
        var response = await fetch(LOCALSTRIPE_BASE_API + "/v1/payment_methods", {
          method: "POST", body: JSON.stringify({key: publishableKey, type: "card", card: card})});
        var body = await response.json().catch(function () { return {}; });
        if (!response.ok || body.error) return {error: body.error || {message: "HTTP " + response.status}};
        return {paymentMethod: body};
      } catch (err) {
        return {error: {type: "api_connection_error", message: String(err)}};
      }
    };
    stripe.handleNextAction = function (options) {
      return stripe.confirmCardPayment(options && options.clientSecret);
    };
    return stripe;
  };
})();
"""


class LocalStripeUnavailable(RuntimeError):
    """The localstripe package is not installed."""


def local_keys() -> tuple[str, str, str]:
    """(secret key, publishable key, webhook secret) shaped like Stripe's test-mode ones. The local
    server accepts any ``sk_`` key; these are random so they pass the settings' checks."""
    return ("sk_test_" + secrets.token_urlsafe(32), "pk_test_" + secrets.token_urlsafe(32),
            "whsec_" + secrets.token_urlsafe(32))


@dataclass
class LocalStripe:
    """localstripe as a child process. ``start()`` returns once it answers on ``url``."""

    log_path: Path
    port: int = 0  # 0: any free port (known after start)
    store_path: Path | None = None  # keep the store in this file (None: in memory only)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> LocalStripe:
        try:
            import localstripe  # noqa: F401  (only to say clearly that it is missing)
        except ImportError as exc:
            raise LocalStripeUnavailable("the localstripe package is not installed "
                                         "(pip install 'stagedoor[embedded]')") from exc
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port_file = self.log_path.with_name(f"{self.log_path.stem}.{os.getpid()}.{secrets.token_hex(4)}.port")
        argv = [sys.executable, "-m", "stagedoor.dev_stripe", "--port", str(self.port), "--port-file", str(port_file)]
        if self.store_path is not None:
            argv += ["--store", str(self.store_path)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        try:
            self._wait_ready(port_file, timeout_s)
        except BaseException:
            self.stop()
            raise
        finally:
            port_file.unlink(missing_ok=True)
        return self

    def _wait_ready(self, port_file: Path, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited with {self.process.returncode}; see {self.log_path}")
            if port_file.exists() and port_file.read_text().strip():
                self.port = int(port_file.read_text())
                if self._answers():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"localstripe did not start in {timeout_s} s; see {self.log_path}")

    def _answers(self) -> bool:
        request = urllib.request.Request(self.url + "/v1/balance", headers={"Authorization": "Bearer sk_test_ready"})
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def register_webhook(self, url: str, secret: str, name: str = "stagedoor") -> None:
        """Have the server sign and send its events to ``url`` (localstripe's own ``/_config`` route)."""
        body = json.dumps({"url": url, "secret": secret}).encode()
        request = urllib.request.Request(f"{self.url}/_config/webhooks/{name}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            if int(response.status) != 200:
                raise RuntimeError(f"localstripe refused the webhook: {response.status}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(port: int, port_file: Path | None, store_path: Path | None = None) -> None:
    """Run localstripe's app on 127.0.0.1:``port``, its store in memory (or kept in ``store_path``)."""
    from aiohttp import web
    from localstripe import server
    from localstripe.resources import PaymentIntent, store

    if store_path is None:
        store.dump_to_disk = lambda: None  # the store is this process's memory; no shared pickle file
    else:
        _keep_store_in(store, store_path)
    create_intent = PaymentIntent.__init__

    def create_intent_of_current_api(intent: Any, *args: Any, allowed_payment_method_types: Any = None,
                                     **kwargs: Any) -> None:
        if allowed_payment_method_types is not None:
            kwargs.setdefault("payment_method_types", allowed_payment_method_types)
        create_intent(intent, *args, **kwargs)

    PaymentIntent.__init__ = create_intent_of_current_api
    _complete_for_the_checkout_page(server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    if port_file is not None:
        partial = port_file.with_name(port_file.name + ".partial")
        partial.write_text(str(sock.getsockname()[1]))
        partial.replace(port_file)  # whole or absent: the parent never reads half a number
    web.run_app(server.app, sock=sock, access_log=None, print=None)


def _complete_for_the_checkout_page(server: Any) -> None:
    """Serve the stand-in with ``STAND_IN_COMPLETION`` and let ``POST /v1/payment_methods`` take a
    publishable key for a card (module docstring).

    This reaches into localstripe's internals (its ``app``'s middleware list, its
    ``auth_middleware``, ``get_api_key`` and ``get_post_data``), which is safe only because the
    package is pinned (``localstripe==1.15.10`` in constraints.txt): check these names on an upgrade.
    """
    from aiohttp import web

    localstripe_auth = server.auth_middleware

    @web.middleware
    async def auth_with_publishable_key_for_a_card(request: web.Request, handler: Any) -> web.StreamResponse:
        if (request.method == "POST" and request.path == "/v1/payment_methods"
                and server.get_api_key(request) is None):
            data = await server.get_post_data(request, remove_auth=False)
            key = data.get("key") if isinstance(data, dict) else None
            if isinstance(key, str) and key.startswith("pk_") and data.get("type") == "card":
                response: web.StreamResponse = await handler(request)
                return response
        response = await localstripe_auth(request, handler)
        return response

    @web.middleware
    async def completed_stand_in(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if (request.method == "GET" and request.path == STAND_IN_PATH and isinstance(response, web.Response)
                and response.status == 200 and response.text is not None):
            response.text = response.text + STAND_IN_COMPLETION
        return response

    middlewares = server.app.middlewares
    middlewares[middlewares.index(localstripe_auth)] = auth_with_publishable_key_for_a_card
    middlewares.append(completed_stand_in)


def _keep_store_in(store: Any, path: Path) -> None:
    """Load localstripe's store from ``path`` and write it there after each change (whole file,
    replaced atomically)."""
    if path.exists():
        with open(path, "rb") as fh:
            store.update(pickle.load(fh))  # our own file, written below

    def dump() -> None:
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as fh:
            pickle.dump(dict(store), fh, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)

    store.dump_to_disk = dump


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stagedoor.dev_stripe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8420, help="0: any free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--store", type=Path, help="keep the server's objects in this file across restarts")
    args = parser.parse_args(argv)
    serve(args.port, args.port_file, args.store)


if __name__ == "__main__":
    main()
