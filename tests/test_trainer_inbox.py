"""The trainers' review inbox in Chromium: login, the queue with the costly misses first,
one click assigns, undo, bulk skip, new questions; on a copy of the project's data."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from conftest import free_port
from playwright.sync_api import expect, sync_playwright
from test_trainer import copy_project
from test_widget import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, serious_violations

from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import read_examples
from faqbot.core.review_store import ReviewStore

pytestmark = pytest.mark.browser

TOKEN = "trainer-token-for-the-inbox-tests-0123456789"


@pytest.fixture
def inbox(tmp_path):
    (tmp_path / "projekt").mkdir()
    project = copy_project(tmp_path / "projekt")
    queue = tmp_path / "review.db"
    store = ReviewStore(queue)
    ids = {
        "fallback": store.record(
            "kann man bei euch ein pferd mieten",
            "a",
            "out_of_scope",
            "out_of_scope",
            0.9,
            [{"name": "out_of_scope", "confidence": 0.9}],
        ),
        "costly": store.record(
            "kommt die rechnung auch mit der post zu mir",
            "b",
            "contradicted",
            "faq_erhalte_rechnung",
            0.96,
            [
                {"name": "faq_erhalte_rechnung", "confidence": 0.96},
                {"name": "faq_zahlungsmethoden_akzeptieren", "confidence": 0.02},
            ],
            "said_no",
        ),
        "wish": store.record("ich wünsche mir eine dunkle ansicht", "c", "fallback", "nlu_fallback", 0.5, []),
        "skip": store.record("hallo? jemand da und so weiter", "d", "small_talk", "greet", 0.9, []),
    }
    store.close()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faqbot.server.trainer_inbox",
            "--port",
            str(port),
            "--datei",
            str(queue),
            "--projekt",
            str(project),
        ],
        cwd=PROJECT_DIR,
        env={**os.environ, "FAQBOT_TRAINER_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url + "/inbox/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "inbox did not start"
            time.sleep(0.2)
    yield url, project, queue, ids
    process.terminate()
    process.wait(timeout=10)


def login(page, token: str = TOKEN) -> None:
    page.get_by_label("Zugangsschlüssel").fill(token)
    page.get_by_role("button", name="Anmelden").click()


def test_the_inbox_assigns_undoes_skips_and_lists_new_questions(inbox):
    url, project, queue, ids = inbox
    assert requests.get(url + "/api/queue", timeout=10).status_code == 401
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 375, "height": 800}, locale="de-DE", bypass_csp=True)
        page = context.new_page()
        try:
            page.goto(url)
            login(page, "falsch-" + "x" * 40)
            expect(page.locator("#status")).to_contain_text("Der Zugangsschlüssel ist falsch")
            login(page)
            expect(page.locator("#queue-count")).to_have_text("4 offene Nachrichten, die teuren Fehler zuerst.")
            first = page.locator(".entry").first  # the costly miss first
            expect(first).to_contain_text("kommt die rechnung auch mit der post zu mir")
            expect(first).to_contain_text("sicher beantwortet, aber der Kunde widersprach")
            expect(first).to_contain_text("antwortete „nein“ auf die Antwort")
            assert serious_violations(page) == []
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
            page.screenshot(path=str(SCREENSHOTS / "trainer_inbox_375.png"), full_page=True)
            # One click on a guess assigns the message to that FAQ.
            first.get_by_role("button", name="„Welche Zahlungsmethoden akzeptieren Sie?“ (2 %)").click()
            expect(page.locator("#status")).to_contain_text("1 von 1 zugeordnet.")
            examples = read_examples(project / "data" / "nlu" / "faq.yml")
            assert "kommt die rechnung auch mit der post zu mir" in examples["faq_zahlungsmethoden_akzeptieren"]
            expect(page.locator("#changes")).to_contain_text("hinzugefügt zu faq_zahlungsmethoden_akzeptieren")
            # Wrong FAQ: undo takes it back, the message is open again.
            page.get_by_role("button", name="„kommt die rechnung auch mit der post zu mir“ zurücknehmen").click()
            expect(page.locator("#status")).to_contain_text("Entfernt aus faq_zahlungsmethoden_akzeptieren")
            examples = read_examples(project / "data" / "nlu" / "faq.yml")
            assert "kommt die rechnung auch mit der post zu mir" not in examples["faq_zahlungsmethoden_akzeptieren"]
            expect(page.locator(".entry").first).to_contain_text("kommt die rechnung auch mit der post zu mir")
            # Bulk: two selected, skipped at once; one marked as a new question.
            page.get_by_role("checkbox", name="„hallo? jemand da und so weiter“").check()
            page.get_by_role("checkbox", name="„kann man bei euch ein pferd mieten“").check()
            page.get_by_role("button", name="Überspringen", exact=True).first.click()
            expect(page.locator("#status")).to_have_text("2 Nachricht(en) übersprungen.")
            wish = page.locator(".entry", has_text="ich wünsche mir eine dunkle ansicht")
            wish.get_by_role("button", name="Neue Frage").click()
            expect(page.locator("#new-questions")).to_contain_text("ich wünsche mir eine dunkle ansicht")
            expect(page.locator("#queue-count")).to_have_text("1 offene Nachrichten, die teuren Fehler zuerst.")
        finally:
            context.close()
            browser.close()
    store = ReviewStore(queue)
    statuses = {entry.id: entry.status for entry in store.entries(status=None)}
    store.close()
    assert statuses == {
        ids["fallback"]: "skipped",
        ids["costly"]: "open",
        ids["wish"]: "new_question",
        ids["skip"]: "skipped",
    }
