// TaskFlow control plane: the little JavaScript the pages use. Everything
// works without it; it adds the filter box, checks in the browser, and the
// live updates over the WebSockets. No inline script (the CSP forbids it):
// pages pass what it needs in data- attributes.
"use strict";

(function () {
  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function text(el, value) {
    if (el) el.textContent = value;
  }

  // Task list: filter as you type.
  var filter = document.getElementById("task-filter");
  if (filter) {
    var apply = function () {
      var needle = filter.value.toLowerCase();
      document.querySelectorAll("#task-list .card").forEach(function (card) {
        card.hidden = card.getAttribute("data-search").indexOf(needle) === -1;
      });
    };
    filter.addEventListener("input", apply);
    filter.addEventListener("change", apply);
    apply();
  }

  // Task form: the browser's own checks, shown beside each field.
  var form = document.getElementById("task-form");
  if (form) {
    form.noValidate = true;
    var errorOf = function (el) { return document.getElementById(el.id + "-error"); };
    var clear = function (el) {
      var slot = errorOf(el);
      text(slot, "");
      var field = el.closest(".field");
      if (field) field.classList.remove("invalid");
    };
    var fail = function (el, message) {
      text(errorOf(el), message);
      var field = el.closest(".field");
      if (field) field.classList.add("invalid");
    };
    form.addEventListener("input", function (event) { if (event.target.id) clear(event.target); });

    // Composite fields. Without the script every variant's fields show and
    // lists end in one empty row; with it only the chosen variant shows
    // (the others disabled, so not sent), an unticked optional struct's
    // fields are disabled, and rows are added from the list's <template>
    // (its index placeholder replaced) and removed.
    document.documentElement.classList.add("js");
    var showVariant = function (select) {
      form.querySelectorAll('[data-variant-of="' + select.id + '"]').forEach(function (part) {
        var on = part.getAttribute("data-variant") === select.value;
        part.hidden = !on;
        part.disabled = !on;
      });
    };
    var showBody = function (box) {
      var body = document.getElementById(box.getAttribute("data-include"));
      if (body) { body.hidden = !box.checked; body.disabled = !box.checked; }
    };
    var number = function (list) {
      list.querySelectorAll(":scope > .item > .item-head > .item-n").forEach(function (label, i) {
        label.textContent = "#" + (i + 1);
      });
    };
    var wire = function (root) {
      root.querySelectorAll("select[data-variant-select]").forEach(showVariant);
      root.querySelectorAll("input[data-include]").forEach(showBody);
    };
    form.querySelectorAll("[data-spare]").forEach(function (row) { row.remove(); });
    wire(form);
    form.addEventListener("change", function (event) {
      var el = event.target;
      if (el.matches("select[data-variant-select]")) showVariant(el);
      if (el.matches("input[data-include]")) showBody(el);
    });
    form.addEventListener("click", function (event) {
      var add = event.target.closest("button[data-add]");
      if (add) {
        var list = document.getElementById(add.getAttribute("data-add"));
        var template = list.querySelector(":scope > template");
        var index = parseInt(list.getAttribute("data-next") || "0", 10);
        list.setAttribute("data-next", String(index + 1));
        template.insertAdjacentHTML("beforebegin", template.innerHTML.split(list.getAttribute("data-token")).join(String(index)));
        var row = template.previousElementSibling;
        number(list);
        wire(row);
        var first = row.querySelector("input, select, textarea");
        if (first) first.focus();
        return;
      }
      var remove = event.target.closest("button[data-remove]");
      if (remove) {
        var item = remove.closest(".item");
        var owner = item.parentElement;
        item.remove();
        number(owner);
      }
    });
    form.addEventListener("submit", function (event) {
      var first = null;
      form.querySelectorAll("input, select, textarea").forEach(function (el) {
        if (!el.id || el.type === "hidden") return;
        clear(el);
        var message = "";
        if (!el.checkValidity()) {
          message = el.validationMessage || "This value is not valid.";
        } else if (el.getAttribute("data-json") === "true" && el.value.trim() !== "") {
          try { JSON.parse(el.value); } catch (e) { message = "not valid JSON: " + e.message; }
        }
        if (message) {
          fail(el, message);
          if (!first) first = el;
        }
      });
      if (first) {
        event.preventDefault();
        first.focus();
      }
    });
  }

  // Run page: status, timings, result and log lines as they happen.
  var run = document.getElementById("run");
  if (run) {
    var id = run.getAttribute("data-task-id");
    var log = document.getElementById("log");
    var lastSeq = parseInt(log.getAttribute("data-last-seq") || "0", 10);
    var final = function (status) { return status === "completed" || status === "failed" || status === "cancelled"; };
    var show = function (task) {
      var badge = document.getElementById("status");
      badge.className = "badge " + task.status;
      text(badge, task.status);
      run.setAttribute("data-status", task.status);
      text(document.getElementById("attempt"), task.attempt + " of " + task.max_attempts);
      text(document.getElementById("started-at"), task.started_at || "—");
      text(document.getElementById("finished-at"), task.finished_at || "—");
      var result = document.getElementById("result");
      var done = task.status === "completed";
      result.hidden = !done;
      if (done) text(result, JSON.stringify(task.result, null, 2));
      var error = document.getElementById("error");
      error.hidden = !task.error;
      if (task.error) text(error, task.error.kind + ": " + task.error.message);
      document.getElementById("waiting").hidden = final(task.status);
      document.getElementById("cancel-form").hidden = final(task.status);
      document.getElementById("download").hidden = !done;
      if (final(task.status)) document.getElementById("progress").hidden = true;
    };
    var append = function (line) {
      if (line.seq <= lastSeq) return;
      lastSeq = line.seq;
      var item = document.createElement("li");
      item.className = line.level;
      item.setAttribute("data-seq", line.seq);
      var at = document.createElement("time");
      at.textContent = line.at;
      var level = document.createElement("span");
      level.className = "level";
      level.textContent = line.level;
      var message = document.createElement("span");
      message.className = "message";
      message.textContent = line.message;
      item.append(at, " ", level, " ", message);
      log.appendChild(item);
      document.getElementById("no-log").hidden = true;
      log.scrollTop = log.scrollHeight;
    };
    var delay = 500;
    var gone = false;
    var connect = function () {
      var socket = new WebSocket(wsUrl("/api/v1/tasks/" + encodeURIComponent(id) + "/ws"));
      socket.onopen = function () { delay = 500; };
      socket.onmessage = function (message) {
        var event = JSON.parse(message.data);
        if (event.type === "status") show(event.task);
        else if (event.type === "log") append(event.line);
        else if (event.type === "progress") {
          var bar = document.getElementById("progress");
          bar.hidden = false;
          bar.max = Math.max(event.total, 1);
          bar.value = event.done;
        } else if (event.type === "deleted") {
          gone = true;
          text(document.getElementById("waiting"), "This run was deleted.");
          document.getElementById("waiting").hidden = false;
        }
      };
      socket.onclose = function () {
        if (!gone && !final(run.getAttribute("data-status"))) {
          setTimeout(connect, delay);
          delay = Math.min(delay * 2, 10000);
        }
      };
    };
    connect();
  }

  // History and recent runs: badges follow every run's status.
  var rows = document.querySelectorAll("tr[data-task-id]");
  if (rows.length && !run) {
    var events = new WebSocket(wsUrl("/api/v1/events/ws"));
    events.onmessage = function (message) {
      var event = JSON.parse(message.data);
      // Events were missed: the page, read again, is right.
      if (event.type === "resync") { location.reload(); return; }
      if (event.type !== "status") return;
      var row = document.querySelector('tr[data-task-id="' + event.task.task_id + '"]');
      if (!row) return;
      var badge = row.querySelector("[data-role=status]");
      badge.className = "badge " + event.task.status;
      text(badge, event.task.status);
    };
  }
})();
