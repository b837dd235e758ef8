"""An HTTP/1.1 layer of our own under a service's hottest routes, in front of aiohttp.

Why: a status poll or a join is a few microseconds of our work and one pipelined Redis call, and
aiohttp's own machinery for a request (its protocol, ``web.Request``, the router, ``Response``
and its writer) costs more than all of that together (a profile of a waiting-room process under
the join load puts aiohttp and the loop at about 60 % of its CPU). These two routes carry nearly
every request of an on-sale, so they get a lean path; everything else stays aiohttp's. The layer
is optional: ``STAGEDOOR_HOT_HTTP=false`` serves every request through aiohttp's own ``TCPSite``
(:func:`make_site`); docs/decisions/0001-hot-http-layer.md records what it is worth.

How: :class:`HotSite` listens instead of aiohttp's ``TCPSite`` and gives every connection a
:class:`HotProtocol`, which takes one request at a time, in order. It finds the end of each
request head itself and lets httptools (llhttp, the parser aiohttp's C extension is built on)
parse and validate it; then, by :func:`plan_request`:

- **served hot**, when it is one of the app's hot routes in its plainest form: HTTP/1.1 (or 1.0),
  at most 64 headers in at most 8,000 bytes, a method and path a :class:`HotRoute` matches exactly
  (no query string, no escapes), one ``Host``, at most one ``Connection`` (keep-alive or close),
  and a body, if any, of ``Content-Type: application/json`` within the app's body limit;
- **passed** to an aiohttp protocol kept for the connection, when its end is plain to find (a
  single well-formed ``Content-Length``, or no body): any other route, a HEAD, a query string, a
  charset parameter, a large body. aiohttp answers it exactly as it would alone; the request's
  body bytes are passed on as they arrive, and once aiohttp has written its whole answer (its
  access-log hook, :class:`_Answered`) the connection is hot again. So a browser's page, script
  and event-stream requests, or a proxy's shared keep-alive connections, do not push the polls
  that follow them off the hot path;
- **handed off** for good when its framing is what we leave to aiohttp (``Transfer-Encoding``,
  ``Expect``, ``Upgrade`` or CONNECT, ``TE``, a malformed, bare-LF or oversized head): from then
  on every byte not yet answered, and every byte that follows, goes to aiohttp's protocol as it
  arrives, and aiohttp alone reads the requests.

Requests are answered strictly in order (pipelined ones wait their turn), so neither way
overtakes an answer, and the request's end is always the one llhttp, and so aiohttp, reads.

Flow control has one owner, :meth:`HotProtocol._update_reading`: the connection reads while the
input it holds beyond the request in progress stays within ``MAX_BUFFERED_BYTES`` and aiohttp's
protocol has not asked to pause (aiohttp sees the connection through :class:`_TransportView`,
which brings its pause and resume requests here instead of to the socket). A client that
pipelines requests and never reads the answers fills the socket's write buffer; no next request
is started while writing is paused, the unread input stops at the bound, and the kernel's
buffers hold the rest. Handed-off connections are bounded by aiohttp's own flow control (its
queue of pipelined requests and its body buffers), through the same owner.

Deadlines, one timer per connection (:meth:`HotProtocol._expect`): a connection idle for
``keepalive_s`` is closed; a request's head must arrive within ``head_timeout_s`` of its first
byte and its body within ``body_timeout_s`` of its head, whichever way it is served (a body passed
to aiohttp, or a request on a handed-off connection, is followed with httptools as it goes by);
past a deadline the connection is closed, and aiohttp's handler waiting for the body sees the
connection lost. Waiting for an answer has no deadline (an event stream lasts minutes); time the
server holds the client back (aiohttp paused reading) does not count.

A hot route's handler is the app's own edge (stagedoor/edge.py: request id, metrics, CSRF guard,
problem+json, security headers) around a handler that takes a :class:`HotRequest` (the parts of
``web.Request`` our domain code reads: ``app``, ``method``, ``path``, ``headers``, ``cookies``,
``remote``, ``host``, ``match_info``, ``body``) and returns a :class:`HotResponse` (or the
``web.Response`` the edge renders for an error). The same routes stay registered in aiohttp,
documented in /openapi.json and served there for whatever is passed or handed off.

On shutdown the site stops listening, closes idle connections and lets hot requests in flight
finish (up to ``shutdown_timeout_s``); requests passed to aiohttp end with aiohttp's own shutdown,
which follows (event streams through the app's on_shutdown hooks). A connection that had a
request passed on may also be closed by aiohttp's own idle timer, about an hour after that request.

What this relies on in aiohttp (hence the version pins in pyproject.toml): ``web.RequestHandler``
built here for the runner's ``server``, ``TCPSite``'s ``_runner``/``_server``/``_host``/``_port``,
``web_request.parse_cookie_header``, ``http.SERVER_SOFTWARE``, the access logger being called once
a response is completely written, and a handler's transport used only through the methods
:class:`_TransportView` forwards.
"""

from __future__ import annotations

from stagedoor.hot_http.limits import (
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    KEEPALIVE_S,
    MAX_BUFFERED_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    SHUTDOWN_TIMEOUT_S,
)
from stagedoor.hot_http.protocol import HotProtocol
from stagedoor.hot_http.routes import (
    HOT_ROUTES,
    HotHandler,
    HotRequest,
    HotResponse,
    HotRoute,
    HotRoutes,
    add_hot_routes,
)
from stagedoor.hot_http.site import HotSite, make_site
from stagedoor.hot_http.wire import encode_response, plan_request

__all__ = [
    "BODY_TIMEOUT_S", "HEAD_TIMEOUT_S", "HOT_ROUTES", "KEEPALIVE_S", "MAX_BUFFERED_BYTES", "MAX_HEADERS",
    "MAX_HEAD_BYTES", "SHUTDOWN_TIMEOUT_S", "HotHandler", "HotProtocol", "HotRequest", "HotResponse", "HotRoute",
    "HotRoutes", "HotSite", "add_hot_routes", "encode_response", "make_site", "plan_request",
]
