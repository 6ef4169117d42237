// Shared by the staff's pages (the support team's tickets, the trainers' inbox): calls to
// their server's JSON API with the token typed at login (kept in this browser tab only),
// German errors, and small DOM helpers.
window.Staff = (function () {
  "use strict";

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function when(iso) {
    return new Date(iso).toLocaleString("de-DE", {
      timeZone: "Europe/Berlin", day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  // base: where the API is; key: the sessionStorage key of the token; loggedOut: called on 401.
  function client(base, key, loggedOut) {
    return async function api(path, body) {
      var response;
      try {
        response = await fetch(base + path, {
          method: body === undefined ? "GET" : "POST",
          headers: Object.assign(
            { Authorization: "Bearer " + sessionStorage.getItem(key) },
            body === undefined ? {} : { "Content-Type": "application/json" }
          ),
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        });
      } catch (error) {
        throw new Error("Der Server ist nicht erreichbar. Bitte versuchen Sie es gleich noch einmal.");
      }
      var data = await response.json().catch(function () { return {}; });
      if (response.status === 401) {
        sessionStorage.removeItem(key);
        loggedOut();
        throw new Error("Der Zugangsschlüssel ist falsch oder abgelaufen. Bitte melden Sie sich erneut an.");
      }
      if (!response.ok) { throw new Error(data.message || "Das hat nicht geklappt (Fehler " + response.status + ")."); }
      return data;
    };
  }

  function say(text, isError) {
    var status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // The login form (#login with #token): the token kept in this tab, then start().
  function login(key, start) {
    document.getElementById("login").addEventListener("submit", function (event) {
      event.preventDefault();
      var field = document.getElementById("token");
      var token = field.value.trim();
      if (!token) { say("Bitte geben Sie den Zugangsschlüssel ein.", true); return; }
      sessionStorage.setItem(key, token);
      field.value = "";
      start();
    });
  }

  return { client: client, element: element, when: when, say: say, login: login };
})();
