"""The trainers' review inbox in the browser: what `faqbot-trainer review`, `list` and `undo`
do, without a terminal.

    python -m faqbot.tools.trainer_inbox [--port 5007]     (make inbox)

then http://127.0.0.1:5007/ . It runs where the project's training data are (it edits
``data/nlu/*.yml`` like the command line) and listens on loopback only. Login with
``FAQBOT_TRAINER_TOKEN`` (at least 32 characters; without it the inbox refuses everything,
503); after 10 wrong tokens per minute an address waits (429).

    GET  /api/queue          open messages, costly misses first, grouped by the bot's guess,
                             each with its top three guesses and what the customer did next
    POST /api/assign         {"ids": [..], "faq": "<FAQ id>" | "out_of_scope"}
    POST /api/skip           {"ids": [..]}
    POST /api/new-question   {"ids": [..]}
    GET  /api/changes        the phrasings added and removed since the last training
    POST /api/undo           {"number": n} or {} for the last added phrasing
    GET  /api/new-questions  the messages marked as a new question
    POST /api/new-faq        {"ids": [..], "category", "question", "answer", "phrasings": [..]}:
                             a new FAQ question from those messages (faqbot.tools.new_faq)
    POST /api/train          retrain in the background; GET /api/train: how far it is
    POST /api/report-link    a link to the latest report, valid for 15 minutes (a frame
                             cannot send the token): /bericht/<expiry>.<signature>/bericht.html

„Neu trainieren“ trains on the project's data (``faqbot.tools.train``, in its own process),
checks the new model against the held-out targets (the README's four figures, measured by
``faqbot.tools.report`` on the held-out data, which also records the model before as the
baseline and writes the report the page opens) and only then loads it into the running
NLU server (Rasa's ``PUT /model`` with ``FAQBOT_NLU_TOKEN``, ``--nlu-url``): the bot
answers with it at once, without a restart. A model below the targets is not loaded; the
trainer reads which figure missed. A new FAQ question is answered at once too: the
dialogue's fallback answers a FAQ the running dialogue model does not know yet
(``actions/actions.py``, ``ActionHandleFallback.dialogue_fallback``).

Decisions go through ``faqbot.core.review_decisions`` (masking, refusals with the reason,
the journal), one at a time: the data files are edited by one writer.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from faqbot.core import review_decisions, shared_secrets, trainer_journal
from faqbot.core.intents import GENERAL_INTENTS, OUT_OF_SCOPE, faq_id_for
from faqbot.core.knowledge import load
from faqbot.core.models import newest_model
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.rate_limit import RateLimiter
from faqbot.core.review_store import ReviewStore, location
from faqbot.server.web import STAFF_PAGE_HEADERS
from faqbot.tools import new_faq

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "FAQBOT_TRAINER_TOKEN"
DEFAULT_PORT = 5007
PAGE_FILES = {
    "index.html": (PROJECT_DIR / "web" / "trainer" / "index.html", "text/html"),
    "trainer.js": (PROJECT_DIR / "web" / "trainer" / "trainer.js", "text/javascript"),
    "trainer.css": (PROJECT_DIR / "web" / "trainer" / "trainer.css", "text/css"),
    "staff.js": (PROJECT_DIR / "web" / "staff" / "staff.js", "text/javascript"),  # shared with the ticket page
    "staff.css": (PROJECT_DIR / "web" / "staff" / "staff.css", "text/css"),
}
MAX_IDS = 200  # a bulk action at most
MAX_FIELD = 5000  # characters of a new FAQ's answer, question, category or phrasing
# The page shows the report in a frame of its own.
PAGE_HEADERS = {
    **STAFF_PAGE_HEADERS,
    "Content-Security-Policy": STAFF_PAGE_HEADERS["Content-Security-Policy"] + "; frame-src 'self'",
}
# The report (faqbot.tools.report) is opened by a link valid for a while: a frame cannot
# send the token. Its styles are inline, it runs no script, only the inbox may frame it.
REPORT_LINK_SECONDS = 15 * 60
REPORT_FILES = re.compile(r"^(bericht\.html|verwechslungsmatrix_\w+\.png)$")
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'self'; "
        "form-action 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def refusal(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers or None)


# What the trainer reads while and after the bot is retrained.
TRAINING_STATES = {
    "idle": "Noch nicht neu trainiert.",
    "training": "Der Bot wird neu trainiert (etwa zwei Minuten) …",
    "checking": "Das neue Modell wird mit den Testdaten geprüft …",
    "loading": "Das neue Modell wird in den laufenden Bot geladen …",
    "active": "Fertig: Der Bot antwortet jetzt mit dem neuen Modell.",
    "rejected": "Das neue Modell erreicht die Qualitätsziele nicht und wurde nicht geladen; der Bot "
    "antwortet weiter mit dem bisherigen.",
    "failed": "Das Neutrainieren ist fehlgeschlagen; der Bot antwortet weiter mit dem bisherigen Modell.",
}
MEASURE_NAMES = {
    "faq_answered_right": "FAQ sofort richtig beantwortet",
    "faq_wrong_answer": "FAQ falsch beantwortet",
    "faq_resolved": "FAQ sofort oder über „Meinten Sie …?“ richtig",
    "other_got_faq_answer": "Nicht-FAQ mit einer FAQ-Antwort beantwortet",
}


def missed_targets(figures: dict[str, float]) -> list[str]:
    """The held-out targets (faqbot.tools.evaluate.TARGETS) a model's figures miss, in German."""
    from faqbot.tools.evaluate import TARGETS

    missed = []
    for measure, (how, bar) in TARGETS.items():
        value = round(figures[measure], 6)
        if not (value >= bar if how == ">=" else value <= bar):
            sign = "mindestens" if how == ">=" else "höchstens"
            missed.append(f"{MEASURE_NAMES[measure]}: {100 * value:.1f} % (Ziel: {sign} {100 * bar:g} %)")
    return missed


class Inbox:
    def __init__(
        self, project: Path = PROJECT_DIR, queue: Path | str | None = None, nlu_url: str | None = None
    ) -> None:
        self.project, self.queue = project, queue or location()
        self.report_dir = project / "results" / "bericht"  # where `faqbot-trainer evaluate` writes it
        self.nlu_url = (nlu_url or os.environ.get("FAQBOT_NLU_URL") or "http://127.0.0.1:5006").rstrip("/")
        self.training: dict[str, Any] = {"state": "idle", "message": TRAINING_STATES["idle"], "details": []}
        self.training_task: asyncio.Task | None = None
        self.token = os.environ.get(TOKEN_VARIABLE) or None
        if self.token:
            shared_secrets.require(TOKEN_VARIABLE)  # a short token stops the start
        self.failed_logins = RateLimiter.from_environment("FAILED_AUTH")
        self.writing = asyncio.Lock()  # one decision at a time: the data files have one writer

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.authenticate], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/", self.start),
                web.get("/inbox/", self.page),
                web.get("/inbox/{name}", self.page),
                web.get("/api/queue", self.queue_view),
                web.post("/api/assign", self.assign),
                web.post("/api/skip", self.mark("skipped")),
                web.post("/api/new-question", self.mark("new_question")),
                web.get("/api/changes", self.changes),
                web.post("/api/undo", self.undo),
                web.get("/api/new-questions", self.new_questions),
                web.post("/api/new-faq", self.create_faq),
                web.post("/api/train", self.start_training),
                web.get("/api/train", self.training_state),
                web.post("/api/report-link", self.report_link),
                web.get("/bericht/{link}/{name}", self.report_file),
            ]
        )
        return app

    @web.middleware
    async def authenticate(self, request: web.Request, handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):  # the page holds no data
            return await handler(request)
        if not self.token:
            return refusal(503, f"{TOKEN_VARIABLE} ist nicht gesetzt: Der Posteingang ist abgeschaltet.")
        address = request.remote or "?"
        wait = self.failed_logins.waiting(address)
        if wait:
            return refusal(
                429, f"Zu viele falsche Anmeldungen. Bitte warten Sie {wait} Sekunden.", **{"Retry-After": str(wait)}
            )
        given = shared_secrets.bearer_token(request.headers.get("Authorization"))
        if not shared_secrets.matches(given, self.token):
            logger.warning("Trainer-Posteingang: ungültiger Token von %s", address)
            self.failed_logins.allow(address)
            return refusal(401, "Der Zugangsschlüssel fehlt oder ist falsch.")
        return await handler(request)

    async def start(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/inbox/")  # the page's links are relative to it

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        if name not in PAGE_FILES:
            return web.Response(text="Diese Seite gibt es nicht.", status=404)
        path, content_type = PAGE_FILES[name]
        return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)

    def _report_signature(self, expires: int) -> str:
        return hmac.new(str(self.token).encode(), f"bericht:{expires}".encode(), hashlib.sha256).hexdigest()

    async def report_link(self, request: web.Request) -> web.Response:
        """A link to the latest report (written by „Neu trainieren“ and `faqbot-trainer evaluate`)."""
        report = self.report_dir / "bericht.html"
        if not report.exists():
            return refusal(404, "Es gibt noch keinen Bericht. Er entsteht beim nächsten „Neu trainieren“.")
        expires = int(time.time()) + REPORT_LINK_SECONDS
        written = time.strftime("%d.%m.%Y %H:%M", time.localtime(report.stat().st_mtime))
        return web.json_response(
            {"url": f"/bericht/{expires}.{self._report_signature(expires)}/bericht.html", "written": written}
        )

    async def report_file(self, request: web.Request) -> web.StreamResponse:
        if not self.token:
            return web.Response(text="Der Posteingang ist abgeschaltet.", status=503)
        expires, _, signature = request.match_info["link"].partition(".")
        expected = self._report_signature(int(expires)) if expires.isdigit() else ""
        valid = bool(expected) and hmac.compare_digest(signature.encode(), expected.encode())
        if not valid or int(expires) < time.time():
            return web.Response(
                text="Dieser Link zum Bericht ist abgelaufen. Bitte öffnen Sie den Bericht im Posteingang erneut.",
                status=403,
                headers=REPORT_HEADERS,
            )
        name = request.match_info["name"]
        path = self.report_dir / name
        if not REPORT_FILES.match(name) or not path.exists():
            return web.Response(text="Diesen Teil des Berichts gibt es nicht.", status=404, headers=REPORT_HEADERS)
        content_type = "text/html" if name.endswith(".html") else "image/png"
        return web.Response(
            body=path.read_bytes(),
            content_type=content_type,
            charset="utf-8" if content_type == "text/html" else None,
            headers=REPORT_HEADERS,
        )

    def store(self) -> ReviewStore:
        return ReviewStore(self.queue)

    def faqs(self) -> dict:
        return load(self.project / "data" / "faq.yml")

    async def queue_view(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self._queue))

    def _queue(self) -> dict[str, Any]:
        faqs = self.faqs()
        questions = {entry.intent: entry.question for entry in faqs.values()}

        def guess(name: str | None, confidence: float | None) -> dict[str, Any] | None:
            faq_id = faq_id_for(name or "")
            if faq_id not in faqs and name != OUT_OF_SCOPE:
                return None
            return {
                "faq": faq_id or OUT_OF_SCOPE,
                "question": questions.get(name) or GENERAL_INTENTS[OUT_OF_SCOPE],
                "percent": round(100 * (confidence or 0)),
            }

        store = self.store()
        try:
            entries = store.entries(status="open", by_priority=True)
        finally:
            store.close()
        groups: dict[str | None, dict[str, Any]] = {}
        for entry in entries:
            group = groups.setdefault(
                entry.guess,
                {
                    "guess": entry.guess,
                    "question": faqs[entry.guess].question if entry.guess in faqs else None,
                    "entries": [],
                },
            )
            guesses = [g for item in entry.ranking if (g := guess(item.get("name"), item.get("confidence")))]
            suggestion = entry.picked_faq if entry.picked_faq in faqs else None
            group["entries"].append(
                {
                    "id": entry.id,
                    "text": entry.text,
                    "kind": review_decisions.KIND_NAMES.get(entry.kind, entry.kind),
                    "created": entry.created,
                    "confidence": entry.guess_confidence,
                    "answer": review_decisions.answer_text(entry, faqs),
                    "next": review_decisions.outcome_text(entry.outcome, faqs),
                    "guesses": guesses[:3],
                    "suggestion": suggestion or (guesses[0]["faq"] if guesses else None),
                }
            )
        numbered = [
            {"number": number, "faq": entry.id, "question": entry.question}
            for number, entry in enumerate(faqs.values(), start=1)
        ]
        categories = sorted({entry.category for entry in faqs.values()})
        return {"count": len(entries), "groups": list(groups.values()), "faqs": numbered, "categories": categories}

    async def ids(self, request: web.Request) -> list[int] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(isinstance(i, int) for i in ids):
            return refusal(400, f'Bitte senden Sie JSON wie {{"ids": [12, 13]}} (1 bis {MAX_IDS} Nachrichten).')
        return ids

    async def assign(self, request: web.Request) -> web.Response:
        ids = await self.ids(request)
        if isinstance(ids, web.Response):
            return ids
        faq = (await request.json()).get("faq")
        faqs = self.faqs()
        if faq != OUT_OF_SCOPE and faq not in faqs:
            return refusal(400, "Bitte wählen Sie eine FAQ-Frage oder „Nicht in den FAQ“.")
        if self.writing.locked() and self.training["state"] == "training":
            return refusal(409, "Der Bot wird gerade neu trainiert. Bitte ordnen Sie danach weiter zu.")
        async with self.writing:
            results = await asyncio.to_thread(self._assign, ids, None if faq == OUT_OF_SCOPE else faq)
        return web.json_response({"results": results})

    def _assign(self, ids: list[int], faq_id: str | None) -> list[dict[str, Any]]:
        store = self.store()
        try:
            entries = {entry.id: entry for entry in store.entries(status="open")}
            results = []
            for entry_id in ids:
                entry = entries.get(entry_id)
                if entry is None:
                    results.append(
                        {"id": entry_id, "settled": False, "messages": ["Diese Nachricht ist nicht mehr offen."]}
                    )
                    continue
                decision = review_decisions.assign(store, entry, faq_id, self.project)
                results.append({"id": entry_id, "settled": decision.settled, "messages": decision.messages})
            return results
        finally:
            store.close()

    async def create_faq(self, request: web.Request) -> web.Response:
        """A new FAQ question from messages marked as new questions, plus further phrasings."""
        ids = await self.ids(request)
        if isinstance(ids, web.Response):
            return ids
        body = await request.json()
        fields = {name: body.get(name) for name in ("category", "question", "answer")}
        phrasings = body.get("phrasings", [])
        if (
            not all(isinstance(value, str) and len(value) <= MAX_FIELD for value in fields.values())
            or not isinstance(phrasings, list)
            or len(phrasings) > MAX_IDS
            or not all(isinstance(text, str) and len(text) <= MAX_FIELD for text in phrasings)
        ):
            return refusal(
                400,
                'Bitte senden Sie JSON wie {"ids": [12], "category": "…", "question": "…", "answer": "…", '
                '"phrasings": ["…"]}.',
            )
        if self.writing.locked() and self.training["state"] == "training":
            return refusal(409, "Der Bot wird gerade neu trainiert. Bitte legen Sie die FAQ danach an.")
        async with self.writing:
            try:
                messages = await asyncio.to_thread(self._create_faq, ids, fields, phrasings)
            except new_faq.NewFaqRefused as refused:
                return refusal(422, str(refused))
        return web.json_response({"messages": messages}, status=201)

    def _create_faq(self, ids: list[int], fields: dict[str, str], phrasings: list[str]) -> list[str]:
        store = self.store()
        try:
            marked = {entry.id: entry for entry in store.entries(status="new_question")}
            if any(entry_id not in marked for entry_id in ids):
                raise new_faq.NewFaqRefused("Eine der Nachrichten ist nicht (mehr) als neue Frage vorgemerkt.")
            texts = [marked[entry_id].text for entry_id in ids] + phrasings
            created = new_faq.create(
                self.project, fields["category"], fields["question"], fields["answer"], texts, "neue FAQ im Posteingang"
            )
            for entry_id in ids:
                store.set_status(entry_id, "assigned", created.entry.intent)
        finally:
            store.close()
        return created.messages() + ["Danach: „Neu trainieren“; der Bot beantwortet die Frage dann ohne Neustart."]

    def mark(self, status: str):
        async def handler(request: web.Request) -> web.Response:
            ids = await self.ids(request)
            if isinstance(ids, web.Response):
                return ids

            def write() -> None:
                store = self.store()
                try:
                    for entry_id in ids:
                        store.set_status(entry_id, status)
                finally:
                    store.close()

            await asyncio.to_thread(write)
            return web.json_response({"marked": ids, "status": status})

        return handler

    async def changes(self, request: web.Request) -> web.Response:
        def read() -> dict[str, Any]:
            since = trainer_journal.last_training(self.project)
            rows = [
                {
                    "number": number,
                    "action": described.change.action,
                    "intent": described.intent,
                    "phrasing": described.phrasing,
                    "source": described.change.source,
                    "time": described.change.time,
                    "undoable": described.undoable,
                }
                for number, described in enumerate(trainer_journal.described_changes(self.project, since), start=1)
            ]
            return {"since": since.isoformat() if since else None, "changes": rows}

        return web.json_response(await asyncio.to_thread(read))

    async def undo(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        number = body.get("number") if isinstance(body, dict) else None
        if number is not None and not isinstance(number, int):
            return refusal(400, 'Bitte senden Sie JSON wie {"number": 3} oder {}.')

        def reopen(entry_id: int) -> None:
            store = self.store()
            try:
                store.set_status(entry_id, "open")
            finally:
                store.close()

        if self.writing.locked() and self.training["state"] == "training":
            return refusal(409, "Der Bot wird gerade neu trainiert. Bitte nehmen Sie danach zurück.")
        async with self.writing:
            try:
                messages = await asyncio.to_thread(review_decisions.undo, self.project, number, reopen)
            except review_decisions.NothingToUndo as nothing:
                return refusal(409, str(nothing))
        return web.json_response({"messages": messages})

    async def new_questions(self, request: web.Request) -> web.Response:
        def read() -> list[dict[str, Any]]:
            store = self.store()
            try:
                return [
                    {"id": entry.id, "text": entry.text, "created": entry.created}
                    for entry in store.entries(status="new_question")
                ]
            finally:
                store.close()

        return web.json_response({"entries": await asyncio.to_thread(read)})

    async def training_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.training)

    async def start_training(self, request: web.Request) -> web.Response:
        if self.training_task is not None and not self.training_task.done():
            return refusal(409, "Der Bot wird gerade schon neu trainiert.")
        self._set("training")  # already in the answer: the page polls while it runs
        self.training_task = asyncio.create_task(self.retrain())
        return web.json_response(self.training, status=202)

    def _set(self, state: str, details: list[str] | None = None) -> None:
        self.training = {"state": state, "message": TRAINING_STATES[state], "details": details or []}
        logger.info("Neu trainieren: %s", state)

    async def retrain(self) -> None:
        """Train, check against the held-out targets, load into the running NLU server."""
        from faqbot.tools import train

        try:
            before = newest_model(self.project / "models")
            async with self.writing:  # no phrasing changes halfway through reading the data
                model = await asyncio.to_thread(train.train, False, self.project, self.project / "models")
            self._set("checking")
            figures = await self.evaluate(model, before)
            missed = missed_targets(figures)
            if missed:
                self._set("rejected", missed)
                return
            self._set("loading")
            await self.load_into_bot(model)
            self._set("active", [f"Modell {model.name}"])
        except Exception as error:
            logger.exception("Neu trainieren fehlgeschlagen")
            self._set("failed", [str(error)[:300]])

    async def evaluate(self, model: Path, before: Path | None) -> dict[str, float]:
        """The held-out figures of ``model``, measured in a process of its own by the report:
        the trainer can open it, and it compares with the model before (the baseline)."""
        out = self.project / "var" / "trainer" / "pruefung.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "faqbot.tools.report", "--ohne-kreuzvalidierung", "--modell", str(model),
            "--testdaten", str(self.project / "tests" / "nlu_heldout.yml"), "--ordner", str(self.report_dir),
            "--projekt", str(self.project), "--json", str(out),
            *(["--grundlage", str(before)] if before else []),
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"Prüfung mit den Testdaten fehlgeschlagen: {errors.decode(errors='replace')[-300:]}")
        return json.loads(out.read_text(encoding="utf-8"))

    async def load_into_bot(self, model: Path) -> None:
        """Rasa's ``PUT /model`` on the NLU server: the running bot parses with the new model."""
        token = os.environ.get("FAQBOT_NLU_TOKEN", "")
        async with aiohttp.ClientSession() as http:
            async with http.put(
                f"{self.nlu_url}/model",
                json={"model_file": str(model.resolve())},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=300),
            ) as reply:
                if reply.status >= 300:
                    raise RuntimeError(f"Der NLU-Server hat das Modell nicht geladen ({reply.status}).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Der Posteingang der Trainerinnen und Trainer im Browser.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Port auf 127.0.0.1 (Standard: {DEFAULT_PORT})")
    parser.add_argument("--datei", help="Datei der Review-Warteschlange (Standard: wie faqbot-trainer review)")
    parser.add_argument("--projekt", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--nlu-url", help="der NLU-Server des laufenden Bots (Standard: FAQBOT_NLU_URL, sonst :5006)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inbox = Inbox(args.projekt, queue=args.datei, nlu_url=args.nlu_url)
    if not inbox.token:
        raise SystemExit(
            f"Bitte setzen Sie {TOKEN_VARIABLE} (mindestens 32 Zeichen): ohne ihn bleibt der Posteingang zu."
        )
    print(f"Posteingang: http://127.0.0.1:{args.port}/ (Zugangsschlüssel: {TOKEN_VARIABLE})", flush=True)
    web.run_app(inbox.app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
