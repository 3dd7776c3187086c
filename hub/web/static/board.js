/*
 * The dispatch board's live updates (hub/web/dispatch.py, templates/dispatch.html).
 *
 * Subscribes to eventChanged over graphql-transport-ws at /graphql. The WebSocket carries no
 * token: the server authenticates a same-origin upgrade by the page's HttpOnly session cookie.
 * Each change adds a row (a new report on the first page), updates one, or removes one whose
 * event left the open set, and is announced in the live region. A lost connection is retried
 * with growing, jittered delays; once it is back the page reloads, because changes made while
 * it was away were not delivered (the feed is live, not a queue).
 *
 * Rows added live are highlighted for a few seconds (class "arrived"). The overdue count above
 * the board follows the rows of this page that become overdue or stop being so, and new events
 * that arrive overdue; what happens to other pages' events shows on the next reload.
 *
 * Everything this needs comes from the page: data- attributes on table#board (the subscription
 * document, the words, which action each status allows) and <template> elements (the row and
 * the action forms with their CSRF token). Event data only ever goes in through textContent
 * and attributes, never as markup.
 */
(function () {
  "use strict";

  const table = document.getElementById("board");
  if (!table || !("WebSocket" in window) || !("content" in document.createElement("template"))) {
    return;
  }
  const body = table.tBodies[0];
  const labels = JSON.parse(table.dataset.labels);
  const actionStatuses = JSON.parse(table.dataset.actionStatuses);
  const openStatuses = new Set(table.dataset.openStatuses.split(" "));
  const firstPage = table.dataset.firstPage === "true";
  const hasNext = table.dataset.hasNext === "true";
  const overdueOnly = table.dataset.overdueOnly === "true";
  const subscription = table.dataset.subscription;
  const english = table.dataset.lang === "en";
  const connection = document.getElementById("board-connection");
  const announcer = document.getElementById("board-announcer");
  const counter = document.getElementById("board-count");
  const empty = document.getElementById("board-empty");
  const overdueBanner = document.getElementById("board-overdue");
  const overdueText = document.getElementById("board-overdue-text");
  const overdueFilter = document.getElementById("board-overdue-filter");
  let overdueTotal = Number(table.dataset.overdueTotal) || 0;
  const PLACEHOLDER = "__CODE__";
  const BEIJING_MS = 8 * 3600 * 1000;
  const MAX_DELAY_MS = 30000;
  const ANNOUNCEMENTS_KEPT = 5;
  const ARRIVED_MS = 6000;

  // --- rows ------------------------------------------------------------------------------

  function rowOf(code) {
    for (const row of body.rows) {
      if (row.dataset.eventCode === code) {
        return row;
      }
    }
    return null;
  }

  function cell(row, field) {
    return row.querySelector('[data-field="' + field + '"]');
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // The minute in Beijing time, as the server renders it (dispatch.py: _moment).
  function beijing(iso) {
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) {
      return iso;
    }
    const b = new Date(at.getTime() + BEIJING_MS);
    return b.getUTCFullYear() + "-" + pad(b.getUTCMonth() + 1) + "-" + pad(b.getUTCDate()) +
      " " + pad(b.getUTCHours()) + ":" + pad(b.getUTCMinutes());
  }

  function timeElement(iso) {
    const time = document.createElement("time");
    time.dateTime = iso;
    time.textContent = beijing(iso);
    return time;
  }

  function overdueBadge() {
    const badge = document.createElement("strong");
    badge.className = "badge badge-overdue";
    badge.textContent = labels.overdue;
    return badge;
  }

  function allowedActions(status) {
    return Object.keys(actionStatuses).filter((name) => actionStatuses[name].includes(status));
  }

  function actionForms(code, version, names) {
    const fragment = document.createDocumentFragment();
    for (const name of names) {
      const template = document.getElementById("board-" + name + "-template");
      if (!template) {
        continue;
      }
      const form = template.content.cloneNode(true);
      for (const element of form.querySelectorAll("[id]")) {
        element.id = element.id.replace(PLACEHOLDER, code);
      }
      for (const label of form.querySelectorAll("label[for]")) {
        label.htmlFor = label.htmlFor.replace(PLACEHOLDER, code);
      }
      for (const element of form.querySelectorAll("form[action]")) {
        element.setAttribute(
          "action", element.getAttribute("action").replace(PLACEHOLDER, encodeURIComponent(code))
        );
      }
      for (const text of form.querySelectorAll("[data-code-text]")) {
        text.textContent = " " + code;
      }
      fragment.append(form);
    }
    if (!fragment.childNodes.length) {
      const none = document.createElement("span");
      none.className = "hint";
      none.textContent = labels.no_actions;
      fragment.append(none);
    }
    return fragment;
  }

  function setVersion(row, version) {
    for (const input of row.querySelectorAll('input[name="version"]')) {
      input.value = String(version);
    }
  }

  function departmentName(department) {
    if (!department) {
      return labels.not_dispatched;
    }
    return english && department.nameEn ? department.nameEn : department.name;
  }

  function fillTitle(row, event) {
    const title = cell(row, "title");
    title.querySelector("[data-title]").textContent = event.title;
    // The description's <details> stays as the user left it (open or not).
    const details = title.querySelector("details");
    details.hidden = !event.description;
    details.querySelector("[data-description]").textContent = event.description || "";
    for (const text of title.querySelectorAll("[data-code-text]")) {
      text.textContent = " " + event.code;
    }
  }

  function fill(row, event) {
    row.id = "event-" + event.code;
    row.dataset.eventCode = event.code;
    row.dataset.status = event.status;
    row.dataset.version = String(event.version);
    row.dataset.reported = event.reportedAt;
    row.dataset.deadline = event.deadline || "";
    row.classList.toggle("overdue", Boolean(event.overdue));
    cell(row, "code").textContent = event.code;
    fillTitle(row, event);
    cell(row, "status").textContent = labels.status[event.status] || event.status;
    const severity = cell(row, "severity").querySelector(".severity");
    severity.className = "severity severity-" + event.severity.toLowerCase();
    severity.textContent = labels.severity[event.severity] || event.severity;
    cell(row, "category").textContent = labels.category[event.category] || event.category;
    cell(row, "grid").textContent = event.grid ? event.grid.name : "";
    cell(row, "department").textContent = departmentName(event.department);
    cell(row, "reported").replaceChildren(timeElement(event.reportedAt));
    const deadline = cell(row, "deadline");
    deadline.replaceChildren(event.deadline ? timeElement(event.deadline) : labels.no_deadline);
    if (event.overdue) {
      deadline.append(" ", overdueBadge());
    }
    // The forms are rebuilt only when the allowed actions change, so a form someone is
    // filling in keeps its input and focus through changes that leave it valid.
    const actions = cell(row, "actions");
    const names = allowedActions(event.status);
    if (actions.dataset.actions !== names.join(" ") || !actions.childNodes.length) {
      actions.replaceChildren(actionForms(event.code, event.version, names));
      actions.dataset.actions = names.join(" ");
    }
    setVersion(row, event.version);
  }

  function newRow(event) {
    const row = document.getElementById("board-row-template").content.firstElementChild
      .cloneNode(true);
    fill(row, event);
    return row;
  }

  // Newest first: before the first row reported earlier. null when it belongs on a later page.
  function insert(row, reportedAt) {
    const at = Date.parse(reportedAt);
    for (const other of body.rows) {
      if (Date.parse(other.dataset.reported) < at) {
        body.insertBefore(row, other);
        return true;
      }
    }
    if (hasNext) {
      return false;
    }
    body.append(row);
    return true;
  }

  function count(delta) {
    counter.textContent = String(Math.max(0, Number(counter.textContent) + delta));
    empty.hidden = body.rows.length > 0;
  }

  function withCount(template, n) {
    return template.replace("{count}", () => String(n));
  }

  function countOverdue(delta) {
    if (!delta) {
      return;
    }
    overdueTotal = Math.max(0, overdueTotal + delta);
    if (overdueFilter) {
      overdueFilter.textContent = withCount(labels.filter_overdue_count, overdueTotal);
    }
    if (overdueBanner && overdueText) {
      const words = labels.overdue_banner[overdueTotal === 1 ? "one" : "other"];
      overdueText.textContent = withCount(words, overdueTotal);
      overdueBanner.hidden = overdueTotal === 0;
    }
  }

  function isOverdue(row) {
    return row.classList.contains("overdue");
  }

  // A row added live stands out for a moment (board.css: tr.arrived).
  function highlight(row) {
    row.classList.add("arrived");
    window.setTimeout(() => row.classList.remove("arrived"), ARRIVED_MS);
  }

  function announce(key, event) {
    const status = labels.status[event.status] || event.status;
    // One pass with a replacer: an event's own words are never read as a pattern ($&) or as
    // another placeholder ({status} inside a title).
    const values = { code: event.code, title: event.title, status: status };
    const text = labels.announce[key].replace(/\{(code|title|status)\}/g, (_, name) => values[name]);
    const line = document.createElement("p");
    line.textContent = text;
    announcer.append(line);
    while (announcer.childElementCount > ANNOUNCEMENTS_KEPT) {
      announcer.firstElementChild.remove();
    }
  }

  // Actions that bring an event into the open set, and those that take an open one out.
  const ENTERS = new Set(["report", "reopen"]);
  const LEAVES = new Set(["resolve", "reject"]);

  function apply(change) {
    const event = change.event;
    const row = rowOf(event.code);
    if (row && Number(row.dataset.version) > event.version) {
      return; // Older than what the row shows.
    }
    const belongs = openStatuses.has(event.status) && (!overdueOnly || event.overdue);
    if (!belongs) {
      if (row) {
        countOverdue(isOverdue(row) ? -1 : 0);
        row.remove();
        count(-1);
        announce("left", event);
      } else if (LEAVES.has(change.action) && !overdueOnly) {
        count(-1); // An open event on another page left.
      }
      return;
    }
    if (row) {
      const moved = row.dataset.status !== event.status || change.action === "dispatch";
      const wasOverdue = isOverdue(row);
      fill(row, event);
      countOverdue(Number(isOverdue(row)) - Number(wasOverdue));
      if (moved) {
        announce("changed", event);
      }
      return;
    }
    if (!ENTERS.has(change.action)) {
      return; // An open event shown on another page.
    }
    const added = newRow(event);
    if (firstPage && insert(added, event.reportedAt)) {
      highlight(added);
      announce("new", event);
    }
    count(1);
    countOverdue(event.overdue ? 1 : 0);
  }

  // Deadlines pass without any change to the event: mark them as they do.
  function markOverdue() {
    const now = Date.now();
    for (const row of body.rows) {
      const deadline = row.dataset.deadline;
      if (deadline && !isOverdue(row) && Date.parse(deadline) < now) {
        row.classList.add("overdue");
        cell(row, "deadline").append(" ", overdueBadge());
        countOverdue(1);
      }
    }
  }

  // Where the board comes back to if the action takes the event out of this view: the row
  // below it now (rows come and go live), or above it for the last one.
  table.addEventListener("submit", (submitted) => {
    const form = submitted.target;
    const row = form.closest("tr");
    const field = form.querySelector('input[name="next_code"]');
    if (!row || !field) {
      return;
    }
    const neighbour = row.nextElementSibling || row.previousElementSibling;
    field.value = neighbour ? neighbour.dataset.eventCode || "" : "";
  });

  // --- the connection --------------------------------------------------------------------

  let socket = null;
  let attempts = 0;
  let wasLive = false;
  let stopped = false;

  function show(state) {
    connection.dataset.state = state;
    connection.textContent = labels.live[state];
  }

  function send(ws, message) {
    ws.send(JSON.stringify(message));
  }

  function stop(state) {
    stopped = true;
    show(state);
    if (socket) {
      socket.close();
    }
  }

  function retry() {
    attempts += 1;
    const base = Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.min(attempts - 1, 5));
    show("retrying");
    window.setTimeout(connect, base / 2 + Math.random() * base / 2);
  }

  function errorCode(errors) {
    const first = errors && errors[0];
    return first && first.extensions ? first.extensions.code : undefined;
  }

  function receive(ws, message) {
    switch (message.type) {
      case "connection_ack":
        if (wasLive) {
          // Back after an interruption: reload for what happened meanwhile.
          window.location.reload();
          return;
        }
        wasLive = true;
        attempts = 0;
        send(ws, { id: "board", type: "subscribe", payload: { query: subscription } });
        show("on");
        break;
      case "ping":
        send(ws, { type: "pong" });
        break;
      case "next":
        if (message.payload.errors) {
          const code = errorCode(message.payload.errors);
          // The token expired or the policy changed: reconnect (and reload) or sign in again.
          if (code === "POLICY_CHANGED" || code === "UNAUTHENTICATED") {
            ws.close();
          } else {
            stop("unavailable");
          }
          return;
        }
        apply(message.payload.data.eventChanged);
        break;
      case "error":
        stop("unavailable");
        break;
      case "complete":
        ws.close();
        break;
      default:
        break;
    }
  }

  function connect() {
    if (stopped) {
      return;
    }
    show(wasLive ? "retrying" : "connecting");
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    let ws;
    try {
      ws = new WebSocket(scheme + window.location.host + "/graphql", "graphql-transport-ws");
    } catch (failure) {
      retry();
      return;
    }
    socket = ws;
    ws.addEventListener("open", () => send(ws, { type: "connection_init", payload: {} }));
    ws.addEventListener("message", (raw) => {
      let message;
      try {
        message = JSON.parse(raw.data);
      } catch (failure) {
        return;
      }
      receive(ws, message);
    });
    ws.addEventListener("close", (closed) => {
      if (socket !== ws) {
        return;
      }
      socket = null;
      if (stopped) {
        return;
      }
      // 4401: the session's credential no longer verifies; 4403: refused.
      if (closed.code === 4401 || closed.code === 4403) {
        stop("signed_out");
        return;
      }
      retry();
    });
  }

  window.setInterval(markOverdue, 30000);
  connect();
})();
