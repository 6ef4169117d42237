"""The company's help-centre page with the chat widget, served next to the bot.

    python -m faqbot.server.web [--port 8080] [--rasa-port 5005]

``make run`` starts it together with the two Rasa servers (``faqbot.server.serve``). The page
lists the FAQ from ``data/faq.yml`` and embeds ``rasa-webchat``, served from
``web/node_modules`` (installed by ``make install``), so the browser loads nothing from a
CDN. The widget talks to Rasa's socketio channel; the Rasa server must allow this page's
origin (``--cors``).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

from faqbot.core.knowledge import KnowledgeError, load
from faqbot.core.paths import PROJECT_DIR

WEB_DIR = PROJECT_DIR / "web"
WEBCHAT_BUNDLE = WEB_DIR / "node_modules" / "rasa-webchat" / "lib" / "index.js"
DEFAULT_PORT = 8080
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


def origins(port: int) -> tuple[str, str]:
    """The origins a browser sends for this page: the Rasa server must allow them (CORS)."""
    return f"http://localhost:{port}", f"http://127.0.0.1:{port}"


def render_page(rasa_port: int, socket_url: str | None = None, faq_file: Path | None = None) -> bytes:
    """index.html with the FAQ list and the widget settings filled in."""
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
    settings = {"rasaPort": rasa_port, "socketUrl": socket_url, "contactText": contact}
    template = Template((WEB_DIR / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        faq_sections=sections or "<p>Die FAQ sind gerade nicht verfügbar.</p>",
        contact_text=html.escape(contact),
        # "</" must not end the inline <script> early
        settings_json=json.dumps(settings, ensure_ascii=False).replace("</", "<\\/"),
    ).encode("utf-8")


class HelpCentreHandler(BaseHTTPRequestHandler):
    """Serves the page, web/static/*, the widget bundle, and nothing else."""

    server: HelpCentre

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(
                render_page(self.server.rasa_port, self.server.socket_url, self.server.faq_file),
                "text/html; charset=utf-8",
                csp=self._content_security_policy(),
            )
        elif path == "/vendor/rasa-webchat.js":
            if not WEBCHAT_BUNDLE.exists():
                self.send_error(HTTPStatus.NOT_FOUND, "rasa-webchat fehlt: bitte `make install`")
                return
            self._send(WEBCHAT_BUNDLE.read_bytes(), CONTENT_TYPES[".js"], cache=True)
        elif path.startswith("/static/") and self._static(path[len("/static/") :]):
            file = WEB_DIR / "static" / path[len("/static/") :]
            self._send(file.read_bytes(), CONTENT_TYPES[file.suffix], cache=True)
        elif path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "Seite nicht gefunden")

    @staticmethod
    def _static(name: str) -> bool:
        # Plain file names only: no "..", no sub-folders, no unknown types.
        return (
            "/" not in name
            and not name.startswith(".")
            and Path(name).suffix in CONTENT_TYPES
            and (WEB_DIR / "static" / name).is_file()
        )

    def _content_security_policy(self) -> str:
        # The page talks to nothing but itself and the Rasa server. This also stops the
        # Google Fonts request built into rasa-webchat: no third party at run time.
        host = (self.headers.get("Host") or "localhost").rsplit(":", 1)[0]
        bot = self.server.socket_url or f"http://{host}:{self.server.rasa_port}"
        websocket = "ws" + bot[len("http") :]
        return (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; font-src 'self' data:; connect-src 'self' {bot} {websocket}; "
            "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
        )

    def _send(self, body: bytes, content_type: str, cache: bool = False, csp: str | None = None) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        if csp:
            self.send_header("Content-Security-Policy", csp)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # page requests are not worth a log line
        pass


class HelpCentre(ThreadingHTTPServer):
    """The page server, run in a background thread of ``make run`` or a test."""

    daemon_threads = True

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        rasa_port: int = 5005,
        socket_url: str | None = None,
        faq_file: Path | None = None,
        host: str = "",
    ) -> None:
        super().__init__((host, port), HelpCentreHandler)
        self.rasa_port, self.socket_url, self.faq_file = rasa_port, socket_url, faq_file
        self.thread: threading.Thread | None = None

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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.server.web", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAQBOT_WEB_PORT", DEFAULT_PORT)))
    parser.add_argument("--rasa-port", type=int, default=int(os.environ.get("FAQBOT_PORT", 5005)))
    parser.add_argument(
        "--socket-url",
        default=os.environ.get("FAQBOT_SOCKET_URL"),
        help="Adresse des Rasa-Servers für das Widget (Standard: gleicher Host, --rasa-port)",
    )
    args = parser.parse_args()
    server = HelpCentre(args.port, args.rasa_port, args.socket_url)
    print(f"Hilfe-Center mit Chat-Widget: {server.url}  (Strg-C beendet)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
