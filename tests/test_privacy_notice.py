"""Privacy by design in the widget (issue 14, part 5).

In a real headless Chromium (Playwright): before the customer's first message the chat window
shows a short privacy notice with a link to the configured privacy policy (FAQBOT_PRIVACY_URL);
at 375 px it covers neither the input nor the page's width, it is readable (contrast) and its
link is reached with the keyboard. The e-mail question says what the address is for. The unit
tests of the setting and of the placeholder page are in test_web_page.py.
"""

from __future__ import annotations

import pytest
from conftest import bot_servers, free_port, running
from playwright.sync_api import expect, sync_playwright
from test_rest_conversations import response_text
from test_widget import CHROMIUM, CHROMIUM_ARGS, REPLY_TIMEOUT_MS, SCREENSHOTS

PRIVACY_URL = "https://www.example.com/rechtliches/datenschutz?quelle=chat#kundenservice"


@pytest.fixture(scope="module")
def site(model_path, tmp_path_factory):
    # The page server runs in this process (BotServers' thread) and reads the variable from
    # os.environ; the Rasa servers get it in their environment as `make run` would pass it.
    env = {"FAQBOT_PRIVACY_URL": PRIVACY_URL}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAQBOT_PRIVACY_URL", PRIVACY_URL)
        servers = bot_servers(model_path, tmp_path_factory.mktemp("privacy-var"), web_port=free_port(), env=env)
        with running(servers):
            yield servers


def contrast(page, selector: str) -> float:
    """WCAG contrast ratio of the element's text colour against its (first opaque) background."""
    return page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
            let node = element, background;
            while (node) {
                const color = rgb(getComputedStyle(node).backgroundColor);
                if (color.length < 4 || color[3] > 0) { background = color; break; }
                node = node.parentElement;
            }
            background = background || [255, 255, 255];
            const luminance = ([r, g, b]) => {
                const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
            };
            const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background)];
            return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        }""",
        selector,
    )


def test_the_email_question_says_what_the_address_is_used_for():
    # Also what REST integrations show (plain text): the purpose, not only the question.
    question = response_text("utter_ask_customer_email")
    assert "E-Mail-Adresse" in question and "nur, um Ihnen zu dieser Anfrage zu antworten" in question
    assert "abbrechen" in question  # the way out stays


@pytest.mark.browser
def test_privacy_notice_before_the_first_message(site):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 375, "height": 740}, locale="de-DE")
        page = context.new_page()
        try:
            page.goto(site.web.url)
            page.locator("#chat-launcher").click()
            greeting = page.locator(".chat-bot .chat-text").first
            expect(greeting).to_have_text("Assistent: " + response_text("utter_greet"), timeout=REPLY_TIMEOUT_MS)
            assert page.locator(".chat-user").count() == 0  # the customer has not written yet

            # Visible in the chat window, above the greeting, with the configured link.
            notice = page.locator("#chat-log .chat-privacy")
            expect(notice).to_be_visible()
            assert "Nachrichten" in notice.inner_text() and "begrenzte Zeit" in notice.inner_text()
            link = notice.get_by_role("link", name="Datenschutzerklärung")
            assert link.get_attribute("href") == PRIVACY_URL
            assert notice.bounding_box()["y"] < greeting.bounding_box()["y"]

            # 375 px: inside the screen, clear of the input, which still takes a click.
            message_input = page.locator("#chat-input")
            box, field = notice.bounding_box(), message_input.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, box
            assert box["y"] + box["height"] <= field["y"], (box, field)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            centre = (field["x"] + field["width"] / 2, field["y"] + field["height"] / 2)
            assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).className", centre) == (
                message_input.get_attribute("class")
            )

            # Readable (WCAG AA for small text) and reachable with the keyboard from the input.
            assert contrast(page, "#chat .chat-privacy") >= 4.5
            assert contrast(page, "#chat .chat-privacy a") >= 4.5
            message_input.focus()
            for _ in range(5):
                page.keyboard.press("Shift+Tab")
                if page.evaluate("document.activeElement.closest('.chat-privacy') !== null"):
                    break
            expect(link).to_be_focused()

            page.screenshot(path=str(_screenshot("privacy_notice_375")))
            page.set_viewport_size({"width": 1280, "height": 900})  # the desktop widget, same page
            box, window = notice.bounding_box(), page.locator("#chat-window").bounding_box()
            assert window["x"] <= box["x"] and box["x"] + box["width"] <= window["x"] + window["width"]
            assert box["y"] + box["height"] <= message_input.bounding_box()["y"]
            page.screenshot(path=str(_screenshot("privacy_notice_1280")))
        finally:
            context.close()
            browser.close()


def _screenshot(name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
