// The help-centre page's chat widget: a small widget of the project's own on Rasa's
// Socket.IO protocol (session_request/session_confirm, user_uttered, bot_uttered).
// Why not rasa-webchat: README, "Website widget". socket.io-client is loaded only when the
// customer first opens the chat (or comes back to a stored conversation).
(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("chat-settings").textContent);
  // The bot's address comes from the server's configuration, never from the address bar:
  // of the configured ones (by default localhost and 127.0.0.1), the one matching the page's host.
  var socketUrl = settings.socketUrls.filter(function (url) {
    return new URL(url).hostname === window.location.hostname;
  })[0] || settings.socketUrls[0];
  var STORAGE_KEY = "faqbot-chat";
  var OFFLINE_AFTER_MS = 1000;  // a lost connection this long: the customer sees the contact channels
  var PROBE_EVERY_MS = 5000;    // while the bot is down, how often the page checks whether it is back
  var TICKET = /T-\d{8}-\d{5}/;
  var DAY_MS = 24 * 3600 * 1000;
  var RATE_WITHIN_MS = DAY_MS;  // the server accepts a rating this long after the answer
  var ACK_TIMEOUT_MS = 5000;
  var NOT_SENT = "Ihre Bewertung konnte gerade nicht gesendet werden. Bitte versuchen Sie es noch einmal.";
  // Web and e-mail addresses, phone numbers and the places the company configured
  // (website.yml: „Kundenportal“ → its address) become links; the answers stay verbatim.
  var places = Object.keys(settings.links || {}).sort(function (a, b) { return b.length - a.length; });
  var ADDRESS = new RegExp("(https?:\\/\\/[^\\s<>\"')]+[^\\s<>\"').,;:!?]|[\\w.+-]+@[\\w-]+(?:\\.[\\w-]+)+" +
    // phone numbers: international (+49 …) or with a leading 0, never inside „T-2026…“ or a date
    "|(?<![\\w-])(?:\\+\\d{1,3}|\\(?0\\d{1,5}\\)?)[ \\/-]?\\d[\\d \\/-]{3,}\\d" + places.map(function (name) {
      return "|(?:^|(?<=[^\\wÄÖÜäöüß]))" + name.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&") + "[\\wÄÖÜäöüß]*";
    }).join("") + ")", "g");

  function placeUrl(word) {
    for (var i = 0; i < places.length; i += 1) {
      if (word.indexOf(places[i]) === 0) { return settings.links[places[i]]; }
    }
    return null;
  }

  var root = document.getElementById("chat");
  var launcher = document.getElementById("chat-launcher");
  var panel = document.getElementById("chat-window");
  var log = document.getElementById("chat-log");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var typing = document.getElementById("chat-typing");
  var offline = document.getElementById("chat-offline");
  var offlineTicket = document.getElementById("chat-offline-ticket");
  // With a ticket the customer gave an e-mail address: the conversation can go there.
  var transcriptButton = document.getElementById("chat-transcript");

  var state = load();
  var socket = null;
  var connected = false;
  var sessionReady = null;  // resolves once the server confirmed this connection's session
  var confirmSession = null;
  var offlineTimer = null;

  // The browser's copy is kept no longer than the server keeps the conversation (support.yml's
  // retention, counted from the last message): then both are gone.
  function load() {
    try {
      var stored = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "null");
      var messages = stored && Array.isArray(stored.messages) ? stored.messages : null;
      var last = messages && messages.length ? messages[messages.length - 1].time : Date.now();
      if (messages && Date.now() - last <= settings.keepDays * DAY_MS) { return stored; }
      window.localStorage.removeItem(STORAGE_KEY);
    } catch (error) { /* no storage or unreadable: a new conversation */ }
    return { sessionId: null, messages: [], open: false, greeted: false };
  }

  function save() {
    try { window.localStorage.setItem(STORAGE_KEY, JSON.stringify(state)); } catch (error) { /* private mode */ }
  }

  function clock(time) {
    return new Date(time).toLocaleTimeString("de-DE", { hour: "2-digit", minute: "2-digit" });
  }

  // Text with links and the ticket number highlighted, built from text nodes only (no HTML).
  function richText(parent, text) {
    var last = 0;
    text.replace(ADDRESS, function (match, _group, index) {
      plainText(parent, text.slice(last, index));
      var link = document.createElement("a");
      link.textContent = match;
      var place = placeUrl(match);
      if (place || match.indexOf("://") > 0) {
        link.href = place || match;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      } else if (match.indexOf("@") > 0) {
        link.href = "mailto:" + match;
      } else {
        link.href = "tel:" + match.replace(/[^\d+]/g, "");
      }
      parent.appendChild(link);
      last = index + match.length;
    });
    plainText(parent, text.slice(last));
  }

  function plainText(parent, text) {
    var ticket = text.match(TICKET);
    if (!ticket) { parent.appendChild(document.createTextNode(text)); return; }
    parent.appendChild(document.createTextNode(text.slice(0, ticket.index)));
    var mark = document.createElement("strong");
    mark.className = "chat-ticket";
    mark.textContent = ticket[0];
    parent.appendChild(mark);
    plainText(parent, text.slice(ticket.index + ticket[0].length));
  }

  function render(message, index) {
    var item = document.createElement("div");
    item.className = "chat-message chat-" + message.from;
    var label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = message.from === "bot" ? "Assistent: " : "Sie: ";
    var body = document.createElement("p");
    body.className = "chat-text";
    body.appendChild(label);
    if (message.from === "bot") { richText(body, message.text); } else { body.appendChild(document.createTextNode(message.text)); }
    item.appendChild(body);
    var time = document.createElement("time");
    time.className = "chat-time";
    time.dateTime = new Date(message.time).toISOString();
    time.textContent = clock(message.time);
    item.appendChild(time);
    if (message.buttons && message.buttons.length && !message.answered) {
      var group = document.createElement("div");
      group.className = "chat-replies";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Antwortmöglichkeiten");
      message.buttons.forEach(function (button) {
        var choice = document.createElement("button");
        choice.type = "button";
        choice.className = "chat-reply";
        choice.textContent = button.title;
        choice.addEventListener("click", function () { choose(index, button); });
        group.appendChild(choice);
      });
      item.appendChild(group);
    }
    if (message.feedback && (message.rated || Date.now() - message.time < RATE_WITHIN_MS)) {
      item.appendChild(feedbackBox(message));
    }
    return item;
  }

  // „War diese Antwort hilfreich?“ under an FAQ answer; the rating goes to the trainers.
  var THUMB = "M2 10h4v11H2zM8 21h9.2a2 2 0 0 0 2-1.6l1.6-8A2 2 0 0 0 18.8 9H14l.9-4.3A1.5 1.5 0 0 0 12.3 3L8 9z";
  function thumb(down) {
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", THUMB);
    if (down) { path.setAttribute("transform", "rotate(180 12 12)"); }
    svg.appendChild(path);
    return svg;
  }

  function feedbackBox(message) {
    var box = document.createElement("div");
    box.className = "chat-feedback";
    if (message.rated) {
      var thanks = document.createElement("p");
      thanks.className = "chat-feedback-thanks";
      thanks.textContent = "Danke für Ihre Rückmeldung!";
      box.appendChild(thanks);
      if (message.rated === "unhelpful" && !message.answered) {
        box.appendChild(handoffOffer(message));
      }
      return box;
    }
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "War diese Antwort hilfreich?");
    var question = document.createElement("span");
    question.setAttribute("aria-hidden", "true");
    question.textContent = "War diese Antwort hilfreich?";
    box.appendChild(question);
    [[true, "Ja, hilfreich"], [false, "Nein, nicht hilfreich"]].forEach(function (choice) {
      var vote = document.createElement("button");
      vote.type = "button";
      vote.className = "chat-vote";
      vote.setAttribute("aria-label", choice[1]);
      vote.title = choice[1];
      vote.appendChild(thumb(!choice[0]));
      vote.addEventListener("click", function () { rate(message, choice[0], box); });
      box.appendChild(vote);
    });
    return box;
  }

  // After „nicht hilfreich“: the support team, one click away.
  function handoffOffer(message) {
    var offer = document.createElement("button");
    offer.type = "button";
    offer.className = "chat-reply";
    offer.textContent = "Frage an das Support-Team geben";
    offer.addEventListener("click", function () {
      message.answered = true;
      save();
      offer.remove();
      send("/human_handoff", "Frage an das Support-Team geben");
      input.focus();
    });
    return offer;
  }

  function rate(message, helpful, box) {
    var buttons = box.querySelectorAll("button");
    buttons.forEach(function (button) { button.disabled = true; });
    function failed(text) {
      buttons.forEach(function (button) { button.disabled = false; });
      var note = box.querySelector(".chat-feedback-error") || document.createElement("p");
      note.className = "chat-feedback-error";
      note.setAttribute("role", "status");
      note.textContent = text;
      box.appendChild(note);
    }
    connect().then(function () { return sessionReady; }).then(function () {
      socket.timeout(ACK_TIMEOUT_MS).emit("feedback", { token: message.feedback, helpful: helpful }, function (error, reply) {
        if (error || !reply) { failed(NOT_SENT); return; }
        if (!reply.ok) { failed(String(reply.message)); return; }
        message.rated = helpful ? "helpful" : "unhelpful";
        save();
        var done = feedbackBox(message);
        box.replaceWith(done);
        var next = done.querySelector("button");
        if (next) { next.focus(); } else { input.focus(); }
      });
    }, function () { failed(NOT_SENT); });
  }

  function renderAll() {
    var notice = document.getElementById("chat-privacy");
    log.textContent = "";
    log.appendChild(notice);
    state.messages.forEach(function (message, index) { log.appendChild(render(message, index)); });
    log.scrollTop = log.scrollHeight;
  }

  function append(message) {
    state.messages.push(message);
    save();
    log.appendChild(render(message, state.messages.length - 1));
    log.scrollTop = log.scrollHeight;
    if (message.from === "bot") { updateTicket(); }
  }

  function choose(index, button) {
    state.messages[index].answered = true;  // a choice made: its buttons go away
    var group = log.querySelectorAll(".chat-message")[index].querySelector(".chat-replies");
    if (group) { group.remove(); }
    send(button.payload, button.title);
    input.focus();
  }

  function send(payload, shown) {
    if (shown !== null) { append({ from: "user", text: shown, time: Date.now() }); }
    typing.hidden = false;  // the bot is working: until its reply arrives
    connect().then(function () { return sessionReady; }).then(function () {
      socket.emit("user_uttered", { message: payload, session_id: state.sessionId, customData: { language: "de" } });
    }, function () { typing.hidden = true; showOffline(true); });
  }

  function received(data) {
    typing.hidden = true;
    if (!data || (!data.text && !(data.quick_replies || data.buttons))) { return; }
    var buttons = (data.quick_replies || data.buttons || []).map(function (button) {
      return { title: String(button.title), payload: String(button.payload) };
    });
    var message = { from: "bot", text: String(data.text || ""), buttons: buttons, time: Date.now() };
    if (typeof data.feedback === "string") { message.feedback = data.feedback; }
    append(message);
  }

  // socket.io-client, loaded on first use (≈ 15 KB gzipped that a visitor who never chats does not load).
  var loading = null;
  function connect() {
    if (socket) { return Promise.resolve(); }
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = "/vendor/socket.io.min.js";
        script.onload = resolve;
        script.onerror = function () { loading = null; reject(new Error("socket.io-client")); };
        document.head.appendChild(script);
      }).then(openSocket);
    }
    return loading;
  }

  function openSocket() {
    socket = window.io(socketUrl, { path: "/socket.io/", reconnectionDelayMax: 3000 });
    newSession();
    // Messages wait for session_confirm: socket.io would send them before session_request.
    socket.on("connect", function () {
      connected = true;
      showOffline(false);
      socket.emit("session_request", { session_id: state.sessionId });
    });
    socket.on("session_confirm", function (sessionId) {
      state.sessionId = sessionId;  // signed by the server; a stale one was replaced
      save();
      confirmSession();
      if (!state.greeted) {
        state.greeted = true;
        save();
        send("/greet", null);
      }
    });
    socket.on("bot_uttered", received);
    socket.on("disconnect", lost);
    socket.on("connect_error", lost);
  }

  function newSession() {
    sessionReady = new Promise(function (resolve) { confirmSession = resolve; });
  }

  function lost() {
    if (connected) { newSession(); }
    connected = false;
    typing.hidden = true;
    if (!offlineTimer) {
      offlineTimer = setTimeout(function () { offlineTimer = null; if (!connected) { showOffline(true); } }, OFFLINE_AFTER_MS);
    }
  }

  // The notice with the contact channels; closable, and the conversation stays where it is.
  function showOffline(show) {
    if (!show) {
      offline.hidden = true;
      document.body.classList.remove("chat-is-offline");
      return;
    }
    if (offline.dataset.dismissed === "1") { return; }
    updateTicket();
    placeNotice();
    offline.hidden = false;
    document.body.classList.add("chat-is-offline");
  }

  function updateTicket() {
    var ticket = null;
    state.messages.forEach(function (message) {
      var found = message.from === "bot" && message.text.match(TICKET);
      if (found) { ticket = found[0]; }
    });
    offlineTicket.hidden = !ticket;
    transcriptButton.hidden = !ticket;
    if (ticket) { offlineTicket.querySelector("strong").textContent = ticket; }
  }

  // Before the chat is opened: a tiny request tells whether the bot answers at all, so a
  // customer sees the contact channels instead of a chat that cannot work.
  function probe() {
    if (socket) { return; }
    window.fetch(socketUrl + "/", { mode: "no-cors", cache: "no-store" }).then(function () {
      showOffline(false);
    }, function () {
      showOffline(true);
      setTimeout(probe, PROBE_EVERY_MS);
    });
  }

  // The notice sits in the open chat above the conversation, else above the launcher.
  function placeNotice() {
    if (panel.hidden) { root.insertBefore(offline, launcher); } else { panel.insertBefore(offline, log); }
  }

  function setOpen(isOpen) {
    panel.hidden = !isOpen;
    launcher.setAttribute("aria-expanded", String(isOpen));
    root.classList.toggle("chat-open", isOpen);
    placeNotice();
    state.open = isOpen;
    save();
  }

  function open() {
    setOpen(true);
    renderAll();
    input.focus();
    connect().catch(function () { showOffline(true); });
  }

  function close() {
    setOpen(false);
    launcher.focus();
  }

  launcher.addEventListener("click", function () { if (panel.hidden) { open(); } else { close(); } });
  document.getElementById("chat-close").addEventListener("click", close);
  transcriptButton.addEventListener("click", function () {
    send("/request_transcript", transcriptButton.textContent);
    input.focus();
  });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); close(); }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    send(text, text);
  });
  document.getElementById("chat-offline-close").addEventListener("click", function () {
    offline.dataset.dismissed = "1";
    showOffline(false);
  });

  document.getElementById("chat-privacy-link").href = settings.privacyUrl;
  updateTicket();
  if (state.open) { open(); } else if (state.sessionId) { connect().catch(function () { showOffline(true); }); } else { probe(); }
}());
