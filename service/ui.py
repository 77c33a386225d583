"""The model browser: ``/ui/`` lists the models, ``/ui/models/<name>`` shows one (its card, its
plots, and a panel to try it), in plain HTML, CSS and JavaScript shipped in the package.

The pages and their scripts hold no data: the scripts read it from the service's own API
(``/v1/models``, the cards, ``:predict``) with the API key the user gives (kept in the tab's
``sessionStorage``), so the pages themselves need no key. The bundle's plots are served through
the registry (the file names are fixed here, never taken from the request) and need the key
like any model data. Every page is sent with a Content-Security-Policy that allows scripts,
styles and connections to this origin only (no inline script), and card text is only ever set
as text, never parsed as HTML. ``SURROGATE_UI=false`` turns all of it off. Nothing here is on
the inference path.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Blueprint, Flask, Response, redirect, request

from service.bundle_format import is_valid_name
from service.errors import NotFound
from service.web import app_registry

bp = Blueprint("ui", __name__, url_prefix="/ui")

# The files the page loads, by URL name; nothing else under the folder is served.
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
# The bundle files a model page shows.
PLOTS = frozenset({"convergence.png", "parity.png"})

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@cache
def _file(name: str) -> bytes:
    """A file of the package's ui_static folder, read once per process."""
    return (resources.files("service") / "ui_static" / name).read_bytes()


def _page() -> Response:
    """The one page: its script shows the list or a model, as the address says."""
    return Response(_file("app.html"), 200, _HEADERS, mimetype="text/html")


@bp.get("/")
def index() -> Response:
    return _page()


@bp.get("/models/<name>")
def model_page(name: str) -> Response:
    if not is_valid_name(name):
        raise NotFound(f"no model can be named {name!r}")
    return _page()  # the script reads the name from the address


@bp.get("/static/<file>")
def static_file(file: str) -> Response:
    if file not in _STATIC:
        raise NotFound(f"no file {file!r} in the model browser")
    return Response(_file(file), 200, _HEADERS, mimetype=_STATIC[file])


@bp.get("/plots/<name>/<version>/<plot>")
def plot(name: str, version: str, plot: str) -> Response:
    """A bundle's plot, from the directory the registry loaded the version from."""
    if plot not in PLOTS:
        raise NotFound(f"no plot {plot!r}; plots: {', '.join(sorted(PLOTS))}")
    path = app_registry().get(name, version).path / plot
    try:
        data = path.read_bytes()
    except OSError:
        raise NotFound(f"model {name!r} version {version} has no {plot}") from None
    return Response(data, 200, _HEADERS, mimetype="image/png")


def install_ui(app: Flask) -> None:
    """Register the browser's pages, and send browsers asking for ``/`` to ``/ui/`` (a client
    asking for JSON, as KServe's liveness probe does, keeps its ``{"status": "alive"}``)."""
    app.register_blueprint(bp)

    @app.before_request
    def browsers_to_the_ui():
        if request.path == "/" and request.method == "GET" and _wants_html():
            return redirect("/ui/", 302)
        return None


def _wants_html() -> bool:
    accept = request.accept_mimetypes
    return accept.quality("text/html") > accept.quality("application/json")
