// Starts the rasa-webchat widget (German texts, privacy notice) and watches its connection to the bot.
(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("chat-settings").textContent);
  // The bot's address comes from the server's configuration, never from the address bar:
  // of the configured ones (by default localhost and 127.0.0.1), the one matching the page's host.
  var socketUrl = settings.socketUrls.filter(function (url) {
    return new URL(url).hostname === window.location.hostname;
  })[0] || settings.socketUrls[0];
  var OFFLINE_AFTER_MS = 6000;  // how long a customer may wait for the first connection
  var offline = document.getElementById("chat-offline");
  var connected = false;

  function showOffline(show) {
    offline.hidden = !show;
    document.body.classList.toggle("chat-is-offline", show);
  }

  window.WebChat.default({
    socketUrl: socketUrl,
    socketPath: "/socket.io/",
    initPayload: "/greet",
    customData: { language: "de" },
    title: "Kundenservice",
    subtitle: "Ihr digitaler Assistent",
    mainColor: "#1f4e79",
    userBackgroundColor: "#1f4e79",
    inputTextFieldHint: "Ihre Frage …",
    connectingText: "Verbindung wird hergestellt …",
    hideWhenNotConnected: true,
    showFullScreenButton: true,
    showMessageDate: false,
    displayUnreadCount: true,
    // The conversation (session id and messages) survives page reloads; the Rasa
    // server's socketio channel keeps the same conversation (session_persistence).
    params: { storage: "local" },
    onSocketEvent: {
      connect: function () { connected = true; showOffline(false); },
      disconnect: function () { connected = false; setTimeout(checkConnection, OFFLINE_AFTER_MS); },
      connect_error: function () { if (!connected) { setTimeout(checkConnection, OFFLINE_AFTER_MS); } }
    }
  }, document.getElementById("webchat"));  // in #webchat, where the page's styles and observer look

  function checkConnection() { if (!connected) { showOffline(true); } }
  setTimeout(checkConnection, OFFLINE_AFTER_MS);

  // Bare web and e-mail addresses in bot answers become links (answers are sent
  // verbatim, so markdown links cannot be relied on).
  var ADDRESS = /(https?:\/\/[^\s<>"')]+[^\s<>"').,;:!?]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)/g;
  function linkify(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var nodes = [];
    while (walker.nextNode()) {
      if (!walker.currentNode.parentElement.closest("a")) { nodes.push(walker.currentNode); }
    }
    nodes.forEach(function (node) {
      var text = node.nodeValue;
      ADDRESS.lastIndex = 0;
      if (!ADDRESS.test(text)) { return; }
      var fragment = document.createDocumentFragment();
      var last = 0;
      text.replace(ADDRESS, function (match, _group, index) {
        fragment.appendChild(document.createTextNode(text.slice(last, index)));
        var link = document.createElement("a");
        link.textContent = match;
        link.href = match.indexOf("@") > 0 && match.indexOf("://") < 0 ? "mailto:" + match : match;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        fragment.appendChild(link);
        last = index + match.length;
      });
      fragment.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(fragment, node);
    });
  }

  // Privacy notice: the first element of the chat window, above the greeting, so it is read
  // before the first message; it scrolls away with the conversation and stays at its top.
  // The link (settings.privacyUrl, checked by the server) opens in a new tab, so the chat and
  // a half-written message stay as they are.
  function privacyNotice() {
    var notice = document.createElement("p");
    notice.id = "chat-privacy";
    notice.className = "chat-privacy";
    notice.setAttribute("role", "note");
    var title = document.createElement("strong");
    title.textContent = "Hinweis zum Datenschutz:";
    notice.appendChild(title);
    notice.appendChild(document.createTextNode(
      " Wir speichern Ihre Nachrichten für begrenzte Zeit, um Ihre Fragen zu beantworten und " +
      "unseren Assistenten zu verbessern. Mehr dazu in unserer "));
    var link = document.createElement("a");
    link.href = settings.privacyUrl;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "Datenschutzerklärung";
    var hint = document.createElement("span");
    hint.className = "visually-hidden";
    hint.textContent = " (öffnet in einem neuen Tab)";
    link.appendChild(hint);
    notice.appendChild(link);
    notice.appendChild(document.createTextNode("."));
    return notice;
  }
  // rasa-webchat builds the chat window anew each time it is opened: the notice goes back in.
  function addPrivacyNotice() {
    var messages = document.querySelector("#webchat .rw-messages-container");
    if (messages && !messages.querySelector(".chat-privacy")) {
      messages.insertBefore(privacyNotice(), messages.firstChild);
    }
  }

  new MutationObserver(function () {
    addPrivacyNotice();
    document.querySelectorAll("#webchat .rw-response .rw-message-text").forEach(linkify);
  }).observe(document.getElementById("webchat"), { childList: true, subtree: true });
}());
