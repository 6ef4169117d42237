"""The help-centre page server (faqbot.server.web): CSP from the configuration only, security
headers on every response, slow and half-open connections cut (issue 12, finding 8).

Real HelpCentre servers on free ports; no Rasa server needed."""

from __future__ import annotations

import gzip
import html
import http.client
import json
import re
import socket
import time
import urllib.request

import pytest

from faqbot.core.knowledge import load
from faqbot.server import web
from faqbot.server.web import HelpCentre

TIMEOUT_S = 1.0  # the servers' request timeout in these tests (REQUEST_TIMEOUT_S is 10 s)
SLACK_S = 2.0
LOOPBACK = ["http://localhost:5005", "ws://localhost:5005", "http://127.0.0.1:5005", "ws://127.0.0.1:5005"]


@pytest.fixture
def start(monkeypatch):
    """Starts HelpCentre servers on 127.0.0.1 (free ports) and stops them after the test."""
    monkeypatch.delenv("FAQBOT_SOCKET_URL", raising=False)
    servers = []

    def start(**options) -> HelpCentre:
        servers.append(HelpCentre(port=0, rasa_port=5005, host="127.0.0.1", **options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def get(server: HelpCentre, path: str, method: str = "GET", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response, response.read().decode("utf-8")
    finally:
        connection.close()


def directives(csp: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in csp.split(";") if part.strip())}


def page_settings(body: str) -> dict:
    return json.loads(re.search(r'<script id="chat-settings" type="application/json">(.*?)</script>', body).group(1))


@pytest.mark.parametrize(
    "configured, expected",
    [
        ({}, LOOPBACK),
        ({"socket_url": "https://bot.example.com"}, ["https://bot.example.com", "wss://bot.example.com"]),
        ({"env": "http://Bot.Example.com:5005/"}, ["http://bot.example.com:5005", "ws://bot.example.com:5005"]),
    ],
)
def test_a_forged_host_header_changes_neither_the_csp_nor_the_page(start, monkeypatch, configured, expected):
    if "env" in configured:
        monkeypatch.setenv("FAQBOT_SOCKET_URL", configured["env"])
    server = start(socket_url=configured.get("socket_url"))
    for host in ("evil.example", "evil.example:5005", f"localhost:{server.server_address[1]}"):
        response, body = get(server, "/", headers={"Host": host})
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
        assert "evil" not in csp and "evil" not in body
        assert directives(csp)["connect-src"] == expected  # exactly the bot, not even 'self'
        assert page_settings(body)["socketUrls"] == expected[::2]  # the http(s) ones


@pytest.mark.parametrize(
    "url",
    [
        "ftp://bot.example.com",
        "bot.example.com",
        "http://",
        "https://bot.example.com/pfad",
        "https://bot.example.com?x=1",
        "https://bot.example.com#x",
        "https://user@bot.example.com",
        "https://bot.example.com:99999",
        "https://bot.example.com; script-src *",
        "https://bot.example.com 'unsafe-inline'",
        "javascript:alert(1)",
    ],
)
def test_an_invalid_bot_url_is_refused_at_start(monkeypatch, url):
    monkeypatch.delenv("FAQBOT_SOCKET_URL", raising=False)
    with pytest.raises(ValueError, match="Ungültige Bot-Adresse"):
        HelpCentre(port=0, host="127.0.0.1", socket_url=url)
    monkeypatch.setenv("FAQBOT_SOCKET_URL", url)
    with pytest.raises(ValueError, match="Ungültige Bot-Adresse"):
        HelpCentre(port=0, host="127.0.0.1")


def assert_security_headers(response) -> None:
    csp = directives(response.headers["Content-Security-Policy"])
    assert csp["connect-src"] == LOOPBACK
    assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] in (["'none'"], ["'self'"])
    assert response.headers["Referrer-Policy"] in ("no-referrer", "strict-origin-when-cross-origin")
    permissions = dict(item.strip().split("=") for item in response.headers["Permissions-Policy"].split(","))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert permissions[feature] == "()", feature
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Python" not in response.headers["Server"]


def test_every_response_has_the_security_headers(start):
    server = start()
    for path, method, status in [
        ("/", "GET", 200),
        ("/static/chat.js", "GET", 200),
        ("/static/style.css", "GET", 200),
        ("/favicon.ico", "GET", 204),
        ("/gibt-es-nicht", "GET", 404),
        ("/static/../web.py", "GET", 404),
        ("/", "POST", 501),
    ]:
        response, body = get(server, path, method)
        assert response.status == status, path
        assert_security_headers(response)
        if status >= 400:  # error pages are German, with nothing of the request in them
            assert '<html lang="de">' in body and "Error" not in body and "web.py" not in body, body
    response, body = get(server, "/gibt-es-nicht")
    assert "Diese Seite gibt es leider nicht." in body


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True once the server closes the connection (EOF or reset), False if it is still open at deadline."""
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def test_silent_and_half_open_connections_are_closed(start):
    server = start(request_timeout=TIMEOUT_S)
    address = ("127.0.0.1", server.server_address[1])
    sockets = [socket.create_connection(address, timeout=5) for _ in range(50)]
    try:
        for index, sock in enumerate(sockets[::2]):  # half of them: part of a request line or of the headers
            sock.sendall(b"GET /ind" if index % 2 else b"GET / HTTP/1.1\r\nHost: loc")
        opened = time.monotonic()
        # The page still answers meanwhile.
        with urllib.request.urlopen(f"http://127.0.0.1:{address[1]}/", timeout=5) as response:
            assert response.status == 200
        deadline = opened + TIMEOUT_S + SLACK_S
        still_open = [index for index, sock in enumerate(sockets) if not closed_by_server(sock, deadline)]
        assert still_open == [], f"{len(still_open)} of 50 connections still open after {TIMEOUT_S + SLACK_S} s"
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_trickled_byte_by_byte_is_cut_off(start):
    """Each byte within the socket timeout: only a limit on the whole request stops it."""
    server = start(request_timeout=TIMEOUT_S)
    request = b"GET / HTTP/1.0\r\nHost: localhost\r\nUser-Agent: " + b"x" * 40 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as sock:
        started, cut_off = time.monotonic(), None
        for byte in request:  # 60+ bytes, one every 0.2 s: 12 s in all
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # broken pipe / reset: the server has hung up
                cut_off = time.monotonic()
                break
            if closed_by_server(sock, time.monotonic() + 0.2):
                cut_off = time.monotonic()
                break
        assert cut_off is not None and cut_off - started < TIMEOUT_S + SLACK_S


def test_too_many_connections_get_a_german_503(start):
    server = start(request_timeout=5.0, max_connections=2)
    address = ("127.0.0.1", server.server_address[1])
    held = [socket.create_connection(address, timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted and waiting for their request
        response, body = get(server, "/")
        assert response.status == 503
        assert "Bitte versuchen Sie es gleich erneut." in body
        assert_security_headers(response)
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while get(server, "/")[0].status != 200:  # the slots are free again
        assert time.monotonic() < deadline
        time.sleep(0.05)


# The privacy policy the widget's notice links to (issue 14, part 5; the notice itself in the
# browser: test_privacy_notice.py). Looked up on the module, so that each test fails on its own
# where the setting is missing.


def test_without_a_configured_privacy_policy_the_notice_links_to_a_placeholder_page(start, monkeypatch):
    monkeypatch.delenv("FAQBOT_PRIVACY_URL", raising=False)
    server = start()
    assert server.privacy_url == "/datenschutz"
    response, body = get(server, "/")
    assert page_settings(body)["privacyUrl"] == "/datenschutz"
    response, body = get(server, "/datenschutz")
    assert response.status == 200 and response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_security_headers(response)
    assert '<html lang="de">' in body and "<h1>Datenschutzerklärung</h1>" in body
    # It says plainly that the operator must replace it, and keeps search engines away.
    assert "Platzhalter" in body and "FAQBOT_PRIVACY_URL" in body and "ersetzen" in body
    assert '<meta name="robots" content="noindex">' in body


@pytest.mark.parametrize(
    "configured, expected",
    [
        ("https://www.example.com/datenschutz", "https://www.example.com/datenschutz"),
        (
            " HTTPS://WWW.Example.COM:8443/Rechtliches/Datenschutz.html?abschnitt=chat&v=2#Kundenservice ",
            "https://www.example.com:8443/Rechtliches/Datenschutz.html?abschnitt=chat&v=2#Kundenservice",
        ),
        ("http://[::1]:8080/datenschutz%C3%A4", "http://[::1]:8080/datenschutz%C3%A4"),
        ("https://www.example.com", "https://www.example.com"),
        ("/rechtliches/datenschutz#chat", "/rechtliches/datenschutz#chat"),
    ],
)
def test_a_configured_privacy_policy_is_checked_and_passed_to_the_widget(start, monkeypatch, configured, expected):
    assert web.privacy_policy_url(configured) == expected
    monkeypatch.setenv("FAQBOT_PRIVACY_URL", configured)
    from_env = start()
    monkeypatch.setenv("FAQBOT_PRIVACY_URL", "https://env.example/datenschutz")
    from_argument = start(privacy_url=configured)  # the argument wins over the variable
    for server in (from_env, from_argument):
        assert server.privacy_url == expected
        response, body = get(server, "/")
        assert page_settings(body)["privacyUrl"] == expected
        assert response.headers["Content-Security-Policy"] == from_env.security_headers["Content-Security-Policy"]
        # No placeholder next to the real privacy policy.
        assert get(server, "/datenschutz")[0].status == 404


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)//https://www.example.com/",
        "data:text/html,<script>alert(1)</script>",
        "mailto:datenschutz@example.com",
        "ftp://www.example.com/datenschutz",
        "www.example.com/datenschutz",
        "datenschutz",
        "#datenschutz",
        "//evil.example/datenschutz",
        "/\\evil.example/datenschutz",
        "https://",
        "https://user:passwort@www.example.com/datenschutz",
        "https://www.example.com@evil.example/",
        "https://www.example.com:99999/datenschutz",
        "https://www.example.com/daten schutz",
        'https://www.example.com/"><script>alert(1)</script>',
        "https://www.example.com/datenschutz'onmouseover='x",
        "https://www.example.com/%zz",
        "/datenschutz\r\nSet-Cookie: x=1",
        pytest.param("https://www.example.com/" + "a" * 2000, id="longer-than-2000-characters"),
    ],
)
def test_an_invalid_privacy_policy_url_is_refused_at_start(monkeypatch, url):
    monkeypatch.delenv("FAQBOT_SOCKET_URL", raising=False)
    with pytest.raises(ValueError, match="Ungültige Adresse der Datenschutzerklärung"):
        web.privacy_policy_url(url)
    monkeypatch.delenv("FAQBOT_PRIVACY_URL", raising=False)
    with pytest.raises(ValueError, match="FAQBOT_PRIVACY_URL"):
        HelpCentre(port=0, host="127.0.0.1", privacy_url=url)
    monkeypatch.setenv("FAQBOT_PRIVACY_URL", url)
    with pytest.raises(ValueError, match="FAQBOT_PRIVACY_URL"):
        HelpCentre(port=0, host="127.0.0.1")


# Issue 17: contact channels and place links from website.yml; gzip for browsers that accept it.
def test_the_website_file_gives_contacts_and_links(tmp_path, start):
    path = tmp_path / "website.yml"
    path.write_text(
        'contact:\n  phone: "+49 (30) 123-4567"\n  email: hilfe@example.com\n  form: /kontakt\n'
        "links:\n  Kundenportal: https://portal.example.com/login?x=1\n",
        encoding="utf-8",
    )
    website = web.read_website(path)
    assert (website.phone, website.email, website.form) == ("+49 (30) 123-4567", "hilfe@example.com", "/kontakt")
    assert website.links == {"Kundenportal": "https://portal.example.com/login?x=1"}
    server = start(website_file=path)
    _, body = get(server, "/")
    assert '<a href="tel:+49301234567">+49 (30) 123-4567</a>' in body
    assert '<a href="mailto:hilfe@example.com">hilfe@example.com</a>' in body
    assert html.escape(load()[web.CONTACT_FAQ_ID].answer) not in body.split('id="chat-offline"')[1].split("</div>")[0]
    assert page_settings(body)["links"] == website.links


def test_without_contacts_the_notice_names_the_faqs_contact_answer(tmp_path, start):
    assert web.read_website(tmp_path / "nothing.yml") == web.Website()
    assert web.contact_list(web.Website()) == ""
    empty = tmp_path / "website.yml"
    empty.write_text("contact:\n  phone:\nlinks:\n", encoding="utf-8")
    _, body = get(start(website_file=empty), "/")
    notice = re.search(r'<div id="chat-offline".*?</div>', body, re.S).group()
    assert html.escape(load()[web.CONTACT_FAQ_ID].answer) in notice and "chat-contact" not in notice


@pytest.mark.parametrize(
    "content, wrong",
    [
        ('contact:\n  phone: "ruf an"\n', "contact.phone"),
        ("contact:\n  email: keine-adresse\n", "contact.email"),
        ("contact:\n  form: javascript:alert(1)\n", "Ungültige Adresse"),
        ("links:\n  Kundenportal: javascript:alert(1)\n", "Ungültige Adresse"),
        ('links:\n  "<b>Portal</b>": https://portal.example.com\n', "Linkname"),
        ("contact: [1, 2]\n", "Zuordnungen"),
        ("contact: {phone: [\n", "nicht lesbar"),
    ],
)
def test_a_wrong_website_file_is_refused_at_start(tmp_path, content, wrong):
    path = tmp_path / "website.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(wrong)):
        HelpCentre(port=0, host="127.0.0.1", website_file=path)


def raw_get(server: HelpCentre, path: str, headers: dict) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_text_assets_are_gzipped_for_browsers_that_accept_it(start):
    server = start()
    for path in ("/", "/static/chat.js", "/static/style.css", "/vendor/socket.io.min.js"):
        plain_response, plain = raw_get(server, path, {})
        assert plain_response.getheader("Content-Encoding") is None
        packed_response, packed = raw_get(server, path, {"Accept-Encoding": "gzip, deflate, br"})
        assert packed_response.getheader("Content-Encoding") == "gzip", path
        assert packed_response.getheader("Vary") == "Accept-Encoding"
        assert gzip.decompress(packed) == plain and len(packed) < len(plain) / 2, path
