// The trainers' review inbox: the queue grouped by the bot's guess, one click to assign a
// message, bulk actions, the changes since the last training with undo. It talks to the
// inbox's API with the token the trainer typed (kept in this tab only).
(function () {
  "use strict";
  var KEY = "faqbot-trainer-token";
  var OUT_OF_SCOPE = "out_of_scope";
  var $ = function (id) { return document.getElementById(id); };
  var faqs = [];

  var say = Staff.say;

  function show(loggedIn) {
    $("login").hidden = loggedIn;
    $("work").hidden = !loggedIn;
    $("logout").hidden = !loggedIn;
  }

  var api = Staff.client("/api/", KEY, function () { show(false); });

  var element = Staff.element;

  var when = Staff.when;

  function faqOptions(select, chosen) {
    select.replaceChildren();
    var prompt = element("option", "FAQ-Frage wählen …");
    prompt.value = "";
    prompt.disabled = true;
    prompt.selected = true;
    select.appendChild(prompt);
    faqs.forEach(function (faq) {
      var option = element("option", faq.number + ". " + faq.question);
      option.value = faq.faq;
      select.appendChild(option);
    });
    var none = element("option", "Nicht in den FAQ");
    none.value = OUT_OF_SCOPE;
    select.appendChild(none);
    if (chosen) { select.value = chosen; }
  }

  function entryView(entry) {
    var item = element("div", "", "entry");
    var box = element("input");
    box.type = "checkbox";
    box.value = entry.id;
    box.id = "select-" + entry.id;
    box.className = "select";
    var label = element("label", "„" + entry.text + "“", "text");
    label.htmlFor = box.id;
    var head = element("p");
    head.appendChild(box);
    head.appendChild(document.createTextNode(" "));
    head.appendChild(label);
    item.appendChild(head);
    var confidence = entry.confidence === null ? "–" : Math.round(entry.confidence * 100) + " %";
    item.appendChild(element("p", entry.kind + " · Sicherheit " + confidence + " · " + when(entry.created), "meta"));
    item.appendChild(element("p", "Der Bot " + entry.answer + ". Danach: Kunde " + entry.next + ".", "meta"));
    var guesses = element("div", "", "guesses");
    guesses.setAttribute("role", "group");
    guesses.setAttribute("aria-label", "Vorschläge des Bots für „" + entry.text + "“");
    entry.guesses.forEach(function (guess) {
      var button = element("button", "„" + guess.question + "“ (" + guess.percent + " %)", "secondary");
      button.type = "button";
      button.addEventListener("click", function () { assign([entry.id], guess.faq); });
      guesses.appendChild(button);
    });
    item.appendChild(guesses);
    var pick = element("div", "", "pick");
    var select = element("select");
    select.id = "faq-" + entry.id;
    select.setAttribute("aria-label", "FAQ-Frage für „" + entry.text + "“");
    faqOptions(select, entry.suggestion);
    var assignButton = element("button", "Zuordnen");
    assignButton.type = "button";
    assignButton.addEventListener("click", function () { assign([entry.id], select.value); });
    var skip = element("button", "Überspringen", "secondary");
    skip.type = "button";
    skip.addEventListener("click", function () { mark("skip", [entry.id], "übersprungen"); });
    var fresh = element("button", "Neue Frage", "secondary");
    fresh.type = "button";
    fresh.addEventListener("click", function () { mark("new-question", [entry.id], "als neue Frage vorgemerkt"); });
    [select, assignButton, skip, fresh].forEach(function (node) { pick.appendChild(node); });
    item.appendChild(pick);
    return item;
  }

  async function load() {
    var queue = await api("queue");
    faqs = queue.faqs;
    faqOptions($("bulk-faq"));
    $("queue-count").textContent = queue.count
      ? queue.count + " offene Nachrichten, die teuren Fehler zuerst."
      : "Keine offenen Nachrichten – gut gemacht!";
    var groups = $("groups");
    groups.replaceChildren();
    queue.groups.forEach(function (group) {
      var section = element("section");
      var title = group.question ? "Der Bot vermutete: „" + group.question + "“" : "Der Bot vermutete keine FAQ-Frage";
      section.appendChild(element("h3", title + " – " + group.entries.length));
      group.entries.forEach(function (entry) { section.appendChild(entryView(entry)); });
      groups.appendChild(section);
    });
    var changes = await api("changes");
    var list = $("changes");
    list.replaceChildren();
    changes.changes.forEach(function (change) {
      var what = change.action === "added" ? "hinzugefügt zu " : "entfernt aus ";
      var item = element("li", what + change.intent + ": " + (change.phrasing ? "„" + change.phrasing + "“" : "(nicht mehr in den Trainingsdaten)") + " (" + change.source + ") ");
      if (change.undoable) {
        var undo = element("button", "Zurücknehmen", "secondary");
        undo.type = "button";
        undo.setAttribute("aria-label", "„" + change.phrasing + "“ zurücknehmen");
        undo.addEventListener("click", function () { undoChange(change.number); });
        item.appendChild(undo);
      }
      list.appendChild(item);
    });
    $("no-changes").hidden = changes.changes.length > 0;
    var categories = $("categories");
    categories.replaceChildren();
    queue.categories.forEach(function (name) { var option = element("option"); option.value = name; categories.appendChild(option); });
    var fresh = await api("new-questions");
    var questions = $("new-questions");
    questions.replaceChildren();
    fresh.entries.forEach(function (entry) {
      var item = element("li");
      var box = element("input", "", "new-select");
      box.type = "checkbox";
      box.value = entry.id;
      box.id = "new-" + entry.id;
      var label = element("label", "„" + entry.text + "“ (" + when(entry.created) + ")");
      label.htmlFor = box.id;
      item.appendChild(box);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(label);
      questions.appendChild(item);
    });
    $("no-new").hidden = fresh.entries.length > 0;
    $("new-faq").hidden = fresh.entries.length === 0;
    show(true);
  }

  function fail(error) { say(error.message, true); }

  function selected() {
    return Array.prototype.map.call(document.querySelectorAll(".select:checked"), function (box) { return Number(box.value); });
  }

  function assign(ids, faq) {
    if (!faq) { say("Bitte wählen Sie zuerst eine FAQ-Frage.", true); return; }
    api("assign", { ids: ids, faq: faq }).then(function (result) {
      var settled = result.results.filter(function (r) { return r.settled; }).length;
      var notes = [];
      result.results.forEach(function (r) { notes = notes.concat(r.messages); });
      return load().then(function () {
        say(settled + " von " + ids.length + " zugeordnet.\n" + notes.join("\n"), settled < ids.length);
      });
    }).catch(fail);
  }

  function mark(action, ids, what) {
    api(action, { ids: ids }).then(function () {
      return load().then(function () { say(ids.length + " Nachricht(en) " + what + "."); });
    }).catch(fail);
  }

  function undoChange(number) {
    api("undo", { number: number }).then(function (result) {
      return load().then(function () { say(result.messages.join("\n")); });
    }).catch(fail);
  }

  Staff.login(KEY, function () {
    load().then(function () { say("Angemeldet."); return api("train"); }).then(showTraining).catch(fail);
  });
  $("logout").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    show(false);
    say("Sie sind abgemeldet.");
  });
  $("refresh").addEventListener("click", function () { load().then(function () { say("Aktualisiert."); }).catch(fail); });
  $("bulk-assign").addEventListener("click", function () {
    var ids = selected();
    if (!ids.length) { say("Bitte wählen Sie zuerst Nachrichten aus (Kästchen).", true); return; }
    assign(ids, $("bulk-faq").value);
  });
  $("bulk-skip").addEventListener("click", function () {
    var ids = selected();
    if (!ids.length) { say("Bitte wählen Sie zuerst Nachrichten aus (Kästchen).", true); return; }
    mark("skip", ids, "übersprungen");
  });

  $("new-faq").addEventListener("submit", function (event) {
    event.preventDefault();
    var ids = Array.prototype.map.call(document.querySelectorAll(".new-select:checked"), function (box) { return Number(box.value); });
    if (!ids.length) { say("Bitte wählen Sie mindestens eine der vorgemerkten Nachrichten aus.", true); return; }
    var phrasings = $("faq-phrasings").value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
    api("new-faq", {
      ids: ids, category: $("faq-category").value, question: $("faq-question").value, answer: $("faq-answer").value,
      phrasings: phrasings,
    }).then(function (result) {
      $("new-faq").reset();
      return load().then(function () { say(result.messages.join("\n")); });
    }).catch(fail);
  });

  function openReport() {
    return api("report-link", {}).then(function (link) {
      $("report").src = link.url;
      $("report").hidden = false;
      $("report-window").href = link.url;
      $("report-window").textContent = "Bericht vom " + link.written + " in einem eigenen Fenster öffnen";
      $("report-note").hidden = false;
    });
  }
  $("open-report").addEventListener("click", function () { openReport().catch(fail); });

  var RUNNING = ["training", "checking", "loading"];
  var wasRunning = false;
  function showTraining(training) {
    $("training").textContent = training.message;
    var details = $("training-details");
    details.replaceChildren();
    training.details.forEach(function (line) { details.appendChild(element("li", line)); });
    var running = RUNNING.indexOf(training.state) >= 0;
    $("train").disabled = running;
    if (running) { setTimeout(function () { api("train").then(showTraining).catch(fail); }, 2000); }
    else if (training.state === "active") { load().catch(fail); }
    // A training just checked: its report shows what changed.
    if (wasRunning && (training.state === "active" || training.state === "rejected")) { openReport().catch(fail); }
    wasRunning = running;
  }
  $("train").addEventListener("click", function () {
    api("train", {}).then(showTraining).catch(fail);
  });

  if (sessionStorage.getItem(KEY)) { load().then(function () { return api("train"); }).then(showTraining).catch(fail); }
  else { show(false); }
})();
