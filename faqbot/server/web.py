"""The company's help-centre page with the chat widget, served next to the bot.

    python -m faqbot.server.web [--port 8080] [--rasa-port 5005] [--socket-url https://bot.example.com]
                                [--privacy-url https://www.example.com/datenschutz]

``make run`` starts it together with the two Rasa servers (``faqbot.server.serve``). The page
lists the FAQ from ``data/faq.yml`` and carries the project's chat widget (``web/static/chat.js``);
its one library, ``socket.io-client``, is served from ``web/node_modules`` (installed by
``make install``), so the browser loads nothing from a CDN. Text assets go out gzip-compressed
to browsers that accept it. The widget talks to Rasa's socketio channel at the bot's public address, which comes
from the configuration only (``socket_url``, else ``FAQBOT_SOCKET_URL``, else the Rasa port on
localhost and 127.0.0.1), never from a request; the Rasa server must allow this page's
origin (``--cors``). The widget shows a privacy notice before the first message, linking to
the privacy policy (``privacy_url``, else ``FAQBOT_PRIVACY_URL``, else ``/datenschutz``: a
placeholder page served here that the operator must replace). Every response carries the
security headers (CSP, Referrer-Policy, Permissions-Policy, ...); slow, silent or half-open
connections are closed after ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import html
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

from ruamel.yaml import YAML

from faqbot.core.knowledge import KnowledgeError, load
from faqbot.core.paths import PROJECT_DIR, WEBSITE_CONFIG_FILE
from faqbot.core.privacy import DEFAULT_RETENTION_DAYS, retention_days

# The staff's own pages (the support team's ticket page, the trainers' inbox): scripts and
# styles only from their own server, no inline code, never framed, nothing cached.
STAFF_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

WEB_DIR = PROJECT_DIR / "web"
SOCKET_IO_CLIENT = WEB_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
DEFAULT_PORT = 8080
# A connection must deliver its request line and headers within this time (in total, not
# per byte), and no read or write may stall longer: half-open and idle connections are cut.
REQUEST_TIMEOUT_S = 10.0
# More connections at once get a 503: the page runs in `make run`'s supervising process,
# which must not run out of threads because of it.
MAX_CONNECTIONS = 100
# The FAQ entry whose answer names the contact channels: the page shows it when the
# chat cannot reach the bot, so a customer is never left with a spinning widget.
CONTACT_FAQ_ID = "erreiche_kundenservice"
CONTACT_FALLBACK = "Unser Kundenservice ist per E-Mail, Telefon und über das Support-Portal erreichbar."
CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
# scheme://host[:port], optionally with a final "/": anything else could smuggle sources into the CSP.
PUBLIC_URL = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?/?", re.IGNORECASE)
# The privacy policy the widget's notice links to: an http(s) address, here with path, query and
# fragment, or a path on this page's own host. Only characters that need no escaping anywhere (no
# quotes, spaces, angle brackets or backslashes), percent-encoding allowed; no user@ part, no
# "//host" without a scheme (that would be another host).
_URL_CHAR = r"(?:[a-z0-9\-._~!$&()*+,;=:@/]|%[0-9a-f]{2})"
PRIVACY_URL = re.compile(
    r"(?:(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?(?=[/?#]|$)|(?=/(?!/)))"
    rf"(?:/{_URL_CHAR}*)?(?:\?(?:{_URL_CHAR}|\?)*)?(?:#(?:{_URL_CHAR}|\?)*)?",
    re.IGNORECASE,
)
MAX_PRIVACY_URL_LENGTH = 2000
# Without a configured privacy policy the link goes to a placeholder page of this server: a page of
# its own (not a section of the help-centre page), because on a phone the open widget covers the
# whole page, and because the real policy is a page of its own too, so the setting swaps like for like.
DEFAULT_PRIVACY_URL = "/datenschutz"
PRIVACY_PLACEHOLDER_PAGE = """<!DOCTYPE html>
<html lang="de">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>Datenschutzerklärung – Hilfe-Center</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <header class="site-header">
    <div class="wrap">
      <p class="brand">Hilfe-Center</p>
      <h1>Datenschutzerklärung</h1>
    </div>
  </header>
  <main class="wrap privacy-placeholder">
    <p class="placeholder-note"><strong>Platzhalter:</strong> Hier steht noch keine Datenschutzerklärung.
      Der Betreiber dieser Seite muss diesen Platzhalter durch seine eigene Datenschutzerklärung ersetzen
      (Einstellung <code>FAQBOT_PRIVACY_URL</code>).</p>
    <p>Die Datenschutzerklärung beschreibt unter anderem, welche Daten der digitale Assistent und das
      Support-Team speichern, wozu, wie lange, und welche Rechte Sie haben.</p>
    <p><a href="/">Zurück zum Hilfe-Center</a></p>
  </main>
</body>
</html>
"""
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "serial",
        "usb",
    )
)
ERROR_TEXTS = {
    HTTPStatus.BAD_REQUEST: "Die Anfrage ist ungültig.",
    HTTPStatus.NOT_FOUND: "Diese Seite gibt es leider nicht.",
    HTTPStatus.REQUEST_URI_TOO_LONG: "Die Adresse ist zu lang.",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "Die Anfrage ist zu groß.",
    HTTPStatus.NOT_IMPLEMENTED: "Diese Art von Anfrage wird nicht unterstützt.",
    HTTPStatus.SERVICE_UNAVAILABLE: "Das Hilfe-Center ist gerade ausgelastet. Bitte versuchen Sie es gleich erneut.",
}
ERROR_PAGE = """<!DOCTYPE html>
<html lang="de">
<head><meta charset="utf-8"><title>Hilfe-Center – Fehler %(code)d</title></head>
<body><h1>%(explain)s</h1><p><a href="/">Zur Startseite des Hilfe-Centers</a></p></body>
</html>
"""


def origins(port: int) -> tuple[str, str]:
    """The origins a browser sends for this page: the Rasa server must allow them (CORS)."""
    return f"http://localhost:{port}", f"http://127.0.0.1:{port}"


def public_url(url: str) -> str:
    """The bot's public address as an origin (``https://bot.example.com``), or ValueError."""
    match = PUBLIC_URL.fullmatch(url.strip())
    if not match or int(match[3] or 1) not in range(1, 65536):
        raise ValueError(
            f"Ungültige Bot-Adresse {url!r} (FAQBOT_SOCKET_URL / --socket-url): erwartet wird "
            "http(s)://host[:port] ohne Pfad, z. B. https://bot.example.com"
        )
    return match[0].rstrip("/").lower()


def privacy_policy_url(url: str) -> str:
    """The address of the privacy policy (``https://www.example.com/datenschutz`` or a path on this
    host, ``/datenschutz``), or ValueError."""
    url = url.strip()
    match = PRIVACY_URL.fullmatch(url) if len(url) <= MAX_PRIVACY_URL_LENGTH else None
    if not match or int(match[3] or 1) not in range(1, 65536):
        raise ValueError(
            f"Ungültige Adresse der Datenschutzerklärung {url[:100]!r} (FAQBOT_PRIVACY_URL / --privacy-url): "
            "erwartet wird eine http(s)-Adresse, z. B. https://www.example.com/datenschutz, "
            "oder ein Pfad auf dieser Seite, z. B. /datenschutz"
        )
    if match[1]:  # scheme and host are case-insensitive, the rest is not
        scheme_and_host = url[: match.end(3 if match[3] else 2)]
        url = scheme_and_host.lower() + url[len(scheme_and_host) :]
    return url


def content_security_policy(socket_urls: list[str]) -> str:
    # The page talks to nothing but the Rasa server (Socket.IO: polling over http(s), then
    # ws(s)): no third party at run time, no inline script or style.
    bot = " ".join(f"{url} ws{url[len('http') :]}" for url in socket_urls)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:; font-src 'self' data:; connect-src {bot}; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    )


PHONE = re.compile(r"\+?[0-9][0-9 ()/-]{4,28}[0-9]")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PLACE_NAME = re.compile(r"[A-Za-zÄÖÜäöüß][A-Za-zÄÖÜäöüß0-9 -]{0,58}[A-Za-zÄÖÜäöüß0-9]")


@dataclass(frozen=True)
class Website:
    """``website.yml``: contact channels for the notice when the bot is down, and the
    addresses of places the FAQ answers name (rendered as links by the widget)."""

    phone: str = ""
    email: str = ""
    form: str = ""
    links: dict[str, str] = field(default_factory=dict)

    @property
    def has_contact(self) -> bool:
        return bool(self.phone or self.email or self.form)


def read_website(path: Path | None = None) -> Website:
    """The website settings, checked; ValueError (German) names what is wrong."""
    path = Path(path or os.environ.get("FAQBOT_WEBSITE_FILE") or WEBSITE_CONFIG_FILE)
    if not path.exists():
        return Website()
    try:
        content = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except Exception as error:  # YAML syntax errors come in several classes
        raise ValueError(f"{path} ist nicht lesbar: {error}") from error
    contact = content.get("contact") or {}
    if not isinstance(contact, dict) or not isinstance(content.get("links") or {}, dict):
        raise ValueError(f"{path}: „contact“ und „links“ müssen Zuordnungen sein.")

    def checked(name: str, pattern: re.Pattern, example: str) -> str:
        value = str(contact.get(name) or "").strip()
        if value and not pattern.fullmatch(value):
            raise ValueError(f"{path}: contact.{name} {value[:80]!r} ist ungültig, z. B. {example}")
        return value

    links = {}
    for name, url in (content.get("links") or {}).items():
        if not PLACE_NAME.fullmatch(str(name)):
            raise ValueError(
                f"{path}: der Linkname {str(name)[:80]!r} ist ungültig (Buchstaben, Ziffern, Leerzeichen, -)."
            )
        links[str(name)] = privacy_policy_url(str(url or ""))  # http(s) or a path on this page's host
    form = str(contact.get("form") or "").strip()
    return Website(
        phone=checked("phone", PHONE, "+49 30 1234567"),
        email=checked("email", EMAIL, "support@example.com"),
        form=privacy_policy_url(form) if form else "",
        links=links,
    )


def contact_list(website: Website) -> str:
    """The configured contact channels as HTML links (tel:, mailto:, the form)."""
    items = []
    if website.phone:
        number = re.sub(r"[^0-9+]", "", website.phone)
        items.append(f'<li>Telefon: <a href="tel:{number}">{html.escape(website.phone)}</a></li>')
    if website.email:
        items.append(f'<li>E-Mail: <a href="mailto:{website.email}">{html.escape(website.email)}</a></li>')
    if website.form:
        items.append(f'<li><a href="{html.escape(website.form)}">Kontaktformular</a></li>')
    return f'<ul class="chat-contact">{"".join(items)}</ul>' if items else ""


def render_page(
    socket_urls: list[str],
    faq_file: Path | None = None,
    privacy_url: str = DEFAULT_PRIVACY_URL,
    website: Website | None = None,
    keep_days: int = DEFAULT_RETENTION_DAYS["conversations"],
) -> bytes:
    """index.html with the FAQ list and the widget settings filled in. ``keep_days``: how long
    the browser keeps its copy of the conversation (the server's retention, support.yml)."""
    try:
        knowledge = load(faq_file)
    except KnowledgeError:
        knowledge = {}  # the page still offers the chat and the contact channels
    categories: dict[str, list] = {}
    for entry in knowledge.values():
        categories.setdefault(entry.category, []).append(entry)
    sections = "\n".join(
        f'<section class="category"><h2>{html.escape(category)}</h2>\n'
        + "\n".join(
            f"<details><summary>{html.escape(entry.question)}</summary><p>{html.escape(entry.answer)}</p></details>"
            for entry in entries
        )
        + "</section>"
        for category, entries in categories.items()
    )
    contact = knowledge[CONTACT_FAQ_ID].answer if CONTACT_FAQ_ID in knowledge else CONTACT_FALLBACK
    website = website or Website()
    settings = {
        "socketUrls": socket_urls,
        "privacyUrl": privacy_url,
        "links": website.links,
        "keepDays": keep_days,
    }
    template = Template((WEB_DIR / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        faq_sections=sections or "<p>Die FAQ sind gerade nicht verfügbar.</p>",
        contact_text=html.escape(contact),
        # When the bot is down: the configured channels as links, else the FAQ's contact answer.
        offline_contacts=contact_list(website) or f"<p>{html.escape(contact)}</p>",
        # "</" must not end the inline <script> early
        settings_json=json.dumps(settings, ensure_ascii=False).replace("</", "<\\/"),
    ).encode("utf-8")


@functools.lru_cache(maxsize=64)
def compressed(body: bytes) -> bytes:
    """``body`` gzip-compressed; the files and the page repeat, so each is compressed once."""
    return gzip.compress(body, compresslevel=6, mtime=0)


class HelpCentreHandler(BaseHTTPRequestHandler):
    """Serves the page, web/static/*, socket.io-client, and nothing else.

    HTTP/1.0 (http.server's default): one request per connection, no idle keep-alive."""

    server: HelpCentre
    error_message_format = ERROR_PAGE

    def setup(self) -> None:
        # The socket timeout ends a silent connection and a stalled read or write; the timer
        # ends one that trickles its request a byte at a time (each read within the timeout).
        self.timeout = self.server.request_timeout
        super().setup()
        self._deadline = threading.Timer(self.server.request_timeout, self._hang_up)
        self._deadline.daemon = True
        self._deadline.start()

    def _hang_up(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def parse_request(self) -> bool:
        complete = super().parse_request()  # reads the headers
        self._deadline.cancel()
        return complete

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def handle(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self.command, self.request_version, self.requestline = "", "HTTP/1.0", ""  # no request read
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        try:
            super().handle()
        finally:
            self.server.slots.release()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = render_page(
                self.server.socket_urls,
                self.server.faq_file,
                self.server.privacy_url,
                self.server.website,
                self.server.keep_days,
            )
            self._send(page, "text/html; charset=utf-8")
        elif path == DEFAULT_PRIVACY_URL and self.server.privacy_url == DEFAULT_PRIVACY_URL:
            # Only while no privacy policy is configured: no stray placeholder next to the real one.
            self._send(PRIVACY_PLACEHOLDER_PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/vendor/socket.io.min.js":
            if not SOCKET_IO_CLIENT.exists():
                self.send_error(HTTPStatus.NOT_FOUND, explain="Der Chat ist nicht installiert (make install).")
                return
            self._send(SOCKET_IO_CLIENT.read_bytes(), CONTENT_TYPES[".js"], cache=True)
        elif path.startswith("/static/") and self._static(path[len("/static/") :]):
            file = WEB_DIR / "static" / path[len("/static/") :]
            self._send(file.read_bytes(), CONTENT_TYPES[file.suffix], cache=True)
        elif path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    @staticmethod
    def _static(name: str) -> bool:
        # Plain file names only: no "..", no sub-folders, no unknown types.
        return (
            "/" not in name
            and not name.startswith(".")
            and Path(name).suffix in CONTENT_TYPES
            and (WEB_DIR / "static" / name).is_file()
        )

    def _send(self, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Vary", "Accept-Encoding")
        if "gzip" in self.headers.get("Accept-Encoding", "") and not content_type.startswith("image/png"):
            body = compressed(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The visitor reads the German text in the body; the status line keeps the standard
        # reason phrase (ASCII), also for the errors http.server raises itself.
        text = explain or ERROR_TEXTS.get(code, "Die Anfrage konnte nicht bearbeitet werden.")
        super().send_error(code, None, text)

    def end_headers(self) -> None:
        # Every response: the page, static files, errors.
        for name, value in self.server.security_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def version_string(self) -> str:  # the Server header, without the Python version
        return "Hilfe-Center"

    def log_message(self, format: str, *args) -> None:  # page requests are not worth a log line
        pass


class HelpCentre(ThreadingHTTPServer):
    """The page server, run in a background thread of ``make run`` or a test.

    ``socket_url``: the bot's public address for the widget and the CSP (else
    ``FAQBOT_SOCKET_URL``, else ``rasa_port`` on localhost and 127.0.0.1). ``privacy_url``:
    the privacy policy the widget's notice links to (else ``FAQBOT_PRIVACY_URL``, else the
    placeholder page ``/datenschutz``). ``website_file``: contact channels and place links
    (else ``FAQBOT_WEBSITE_FILE``, else ``website.yml``; ``read_website``)."""

    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits for accept() instead of being dropped

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        rasa_port: int = 5005,
        socket_url: str | None = None,
        faq_file: Path | None = None,
        host: str = "",
        request_timeout: float = REQUEST_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        privacy_url: str | None = None,
        website_file: Path | None = None,
    ) -> None:
        configured = socket_url or os.environ.get("FAQBOT_SOCKET_URL")
        # Both loopback names by default, so the page works as http://localhost:8080 and as
        # http://127.0.0.1:8080 (chat.js takes the one matching the address bar, else the first).
        self.socket_urls = [public_url(configured)] if configured else list(origins(rasa_port))
        privacy = privacy_url or os.environ.get("FAQBOT_PRIVACY_URL")
        self.privacy_url = privacy_policy_url(privacy) if privacy else DEFAULT_PRIVACY_URL
        self.security_headers = {
            "Content-Security-Policy": content_security_policy(self.socket_urls),
            "Referrer-Policy": "no-referrer",
            "Permissions-Policy": PERMISSIONS_POLICY,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
        }
        self.rasa_port, self.faq_file = rasa_port, faq_file
        self.website = read_website(website_file)
        # The browser keeps its copy as long as the server keeps the conversation (support.yml).
        self.keep_days = retention_days()["conversations"]
        self.request_timeout = request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self.thread: threading.Thread | None = None
        super().__init__((host, port), HelpCentreHandler)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server_address[1]}/"

    def start(self) -> HelpCentre:
        self.thread = threading.Thread(target=self.serve_forever, name="help-centre", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        # A visitor who hangs up, or a connection cut for being too slow, is no error of the page.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.server.web", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAQBOT_WEB_PORT", DEFAULT_PORT)))
    parser.add_argument("--rasa-port", type=int, default=int(os.environ.get("FAQBOT_PORT", 5005)))
    parser.add_argument(
        "--socket-url",
        help="öffentliche Adresse des Rasa-Servers für das Widget und die CSP, z. B. https://bot.example.com "
        "(Standard: FAQBOT_SOCKET_URL, sonst http://localhost:<rasa-port> und http://127.0.0.1:<rasa-port>)",
    )
    parser.add_argument(
        "--privacy-url",
        help="Adresse der Datenschutzerklärung, auf die der Datenschutzhinweis im Widget verweist, "
        "z. B. https://www.example.com/datenschutz "
        f"(Standard: FAQBOT_PRIVACY_URL, sonst der Platzhalter {DEFAULT_PRIVACY_URL})",
    )
    args = parser.parse_args()
    try:
        server = HelpCentre(args.port, args.rasa_port, args.socket_url, privacy_url=args.privacy_url)
    except ValueError as error:
        parser.error(str(error))
    print(f"Hilfe-Center mit Chat-Widget: {server.url}  (Strg-C beendet)")
    print(f"Bot-Adresse für das Widget:   {' '.join(server.socket_urls)}")
    placeholder = "  (Platzhalter: FAQBOT_PRIVACY_URL setzen)" if server.privacy_url == DEFAULT_PRIVACY_URL else ""
    print(f"Datenschutzerklärung:         {server.privacy_url}{placeholder}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
