// The support team's ticket page: open tickets, transcript, reply, close. It talks to the
// support API of the same server with the token the agent typed (kept in this tab only).
(function () {
  "use strict";
  var API = "../tickets";  // the page is served at /webhooks/support/agent/
  var KEY = "faqbot-support-token";
  var SPEAKERS = { kunde: "Kunde", bot: "Assistent", support: "Support-Team" };
  var DELIVERY = {
    delivered: "zugestellt",
    pending: "wird zugestellt",
    failed: "Zustellung fehlgeschlagen – bitte prüfen",
  };
  var $ = function (id) { return document.getElementById(id); };
  var current = null;  // the ticket id shown in the detail view

  function when(iso) { return Staff.when(iso) + " Uhr"; }

  function show(view) {
    ["login", "list", "detail"].forEach(function (name) { $(name).hidden = name !== view; });
    $("logout").hidden = view === "login";
  }

  var api = Staff.client(API, KEY, function () { show("login"); });
  var say = Staff.say;

  var cell = Staff.element;

  async function loadList() {
    var data = await api("");
    var list = $("tickets");
    list.replaceChildren();
    data.tickets.forEach(function (ticket) {
      var item = document.createElement("li");
      var title = cell("p", "", "");
      title.appendChild(cell("strong", ticket.ticket_id));
      title.appendChild(document.createTextNode(" – " + (ticket.question || "ohne Frage")));
      item.appendChild(title);
      var customer = ticket.contact.email || ticket.contact.id || "-";
      item.appendChild(cell("p", "Erstellt " + when(ticket.created_at) + " · Kunde: " + customer, "meta"));
      if (ticket.delivery) {
        item.appendChild(cell("p", "Weitergabe: " + DELIVERY[ticket.delivery], "meta delivery-" + ticket.delivery));
      }
      var open = cell("button", "Öffnen");
      open.type = "button";
      open.setAttribute("aria-label", "Ticket " + ticket.ticket_id + " öffnen");
      open.addEventListener("click", function () { openTicket(ticket.ticket_id).catch(fail); });
      item.appendChild(open);
      list.appendChild(item);
    });
    $("empty").hidden = data.tickets.length > 0;
    show("list");
  }

  async function openTicket(ticketId) {
    var ticket = await api("/" + encodeURIComponent(ticketId));
    current = ticketId;
    $("detail-title").textContent = "Ticket " + ticket.ticket_id;
    var facts = $("facts");
    facts.replaceChildren();
    [
      ["Status", ticket.status === "open" ? "offen" : "abgeschlossen"],
      ["Erstellt", when(ticket.created_at)],
      ["Kanal", ticket.channel || "-"],
      ["Kunde", [ticket.contact.email, ticket.contact.id].filter(Boolean).join(" · ") || "-"],
      ["Frage", ticket.question || "-"],
    ].forEach(function (pair) {
      facts.appendChild(cell("dt", pair[0]));
      facts.appendChild(cell("dd", pair[1]));
    });
    var transcript = $("transcript");
    transcript.replaceChildren();
    ticket.transcript.forEach(function (line) {
      var item = cell("li", "", "from-" + line.from);
      item.appendChild(cell("span", (SPEAKERS[line.from] || line.from) + ", " + when(line.time) + ": ", "who"));
      item.appendChild(document.createTextNode(line.text));
      transcript.appendChild(item);
    });
    var open = ticket.status === "open";
    $("reply").hidden = !open;
    $("close").hidden = !open;
    show("detail");
    $("detail-title").setAttribute("tabindex", "-1");
    $("detail-title").focus();
  }

  function fail(error) { say(error.message, true); }

  function replied(result) {
    if (result.in_chat) { return "Die Antwort ist im Chat des Kunden angekommen."; }
    if (result.called_back) { return "Die Antwort geht an die Integration des Kunden."; }
    if (result.mailed) { return "Der Kunde ist nicht im Chat: Die Antwort geht per E-Mail an ihn."; }
    return "Die Antwort steht im Verlauf; der Kunde liest sie, wenn er den Chat wieder öffnet.";
  }

  Staff.login(KEY, function () {
    loadList().then(function () { say("Angemeldet."); }).catch(fail);
  });

  $("logout").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    current = null;
    show("login");
    say("Sie sind abgemeldet.");
  });

  $("refresh").addEventListener("click", function () {
    loadList().then(function () { say("Liste aktualisiert."); }).catch(fail);
  });

  $("back").addEventListener("click", function () {
    current = null;
    loadList().then(function () { say(""); }).catch(fail);
  });

  $("reply").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text) { say("Bitte schreiben Sie zuerst Ihre Antwort.", true); return; }
    // One key per answer written: a second click or a resend is the same reply.
    var key = $("reply-text").dataset.key || (Date.now() + "-" + Math.random().toString(36).slice(2));
    $("reply-text").dataset.key = key;
    api("/" + encodeURIComponent(current) + "/reply", { text: text, key: key }).then(function (result) {
      delete $("reply-text").dataset.key;
      $("reply-text").value = "";
      return openTicket(current).then(function () { say(replied(result)); });
    }).catch(fail);
  });

  $("close").addEventListener("submit", function (event) {
    event.preventDefault();
    var resolution = $("resolution").value.trim();
    var body = resolution ? { resolution: resolution } : {};
    var closed = current;
    api("/" + encodeURIComponent(closed) + "/close", body).then(function (result) {
      $("resolution").value = "";
      current = null;
      var told = result.customer_notified ? "; der Kunde wurde informiert." : "; das Gespräch gibt es nicht mehr.";
      return loadList().then(function () { say("Ticket " + closed + " ist abgeschlossen" + told); });
    }).catch(fail);
  });

  if (sessionStorage.getItem(KEY)) { loadList().catch(fail); } else { show("login"); }
})();
