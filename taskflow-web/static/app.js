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
    var runError = document.getElementById("run-error");
    form.addEventListener("input", function (event) {
      if (event.target.id) clear(event.target);
      if (event.target.matches("textarea[data-raw-of]")) showRaw(event.target);
      text(runError, "");
    });
    // The body as the browser will send it (urlencoded, line breaks as
    // CRLF), to refuse here a form the server would refuse with a 413 and
    // a page that replaces this one.
    var bodySize = function () {
      var crlf = function (s) { return String(s).replace(/\r\n|\r|\n/g, "\r\n"); };
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, name) { params.append(crlf(name), crlf(value)); });
      return params.toString().length;
    };

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
    // A list's rows, template and Add button sit in its fields' fieldset.
    var rowsOf = function (list) { return document.getElementById(list.id + "-fields") || list; };
    var number = function (list) {
      var items = rowsOf(list).querySelectorAll(":scope > .item");
      items.forEach(function (item, i) {
        text(item.querySelector(":scope > .item-head > .item-n"), "#" + (i + 1));
        item.querySelector(":scope > .item-head > [data-move=up]").disabled = i === 0;
        item.querySelector(":scope > .item-head > [data-move=down]").disabled = i === items.length - 1;
      });
    };
    // A row's names carry its index (`items[2].sku`) and the server orders
    // rows by it, so moving a row swaps its index with its neighbour's, in
    // every name and id under each (new-row templates of nested lists too).
    var idOf = function (name) { return "f-" + name.replace(/[^A-Za-z0-9_-]/g, "-"); };
    var rename = function (root, from, to) {
      var ids = [idOf(from), idOf(to)];
      var swap = function (value, old, now) { return value.indexOf(old) === 0 ? now + value.slice(old.length) : value; };
      var one = function (el) {
        ["name", "data-field"].forEach(function (attr) {
          if (el.hasAttribute(attr)) el.setAttribute(attr, swap(el.getAttribute(attr), from, to));
        });
        ["id", "for", "data-add", "data-include", "data-variant-of", "data-raw-of"].forEach(function (attr) {
          if (el.hasAttribute(attr)) el.setAttribute(attr, swap(el.getAttribute(attr), ids[0], ids[1]));
        });
        if (el.tagName === "TEMPLATE") el.content.querySelectorAll("*").forEach(one);
      };
      one(root);
      root.querySelectorAll("*").forEach(one);
    };
    var move = function (item, up) {
      var other = up ? item.previousElementSibling : item.nextElementSibling;
      if (!other || !other.classList.contains("item")) return;
      var mine = item.getAttribute("data-field");
      var theirs = other.getAttribute("data-field");
      rename(item, mine, theirs);
      rename(other, theirs, mine);
      if (up) other.before(item); else other.after(item);
      number(item.parentElement);
    };
    // Filled, a composite's raw JSON is what the server takes: its fields
    // (and "include" box) are hidden and disabled, so not sent, until it
    // is cleared.
    var showRaw = function (box) {
      var group = box.getAttribute("data-raw-of");
      var raw = box.value.trim() !== "";
      var fields = document.getElementById(group + "-fields");
      if (fields) { fields.hidden = raw; fields.disabled = raw; }
      var note = document.getElementById(group + "-raw-note");
      if (note) note.hidden = !raw;
      var include = document.getElementById(group + "-include");
      if (include) include.disabled = raw;
    };
    var wire = function (root) {
      root.querySelectorAll("select[data-variant-select]").forEach(showVariant);
      root.querySelectorAll("input[data-include]").forEach(showBody);
      root.querySelectorAll("textarea[data-raw-of]").forEach(showRaw);
    };
    form.querySelectorAll("[data-spare]").forEach(function (row) { row.remove(); });
    form.querySelectorAll("fieldset.list").forEach(number);
    wire(form);
    form.addEventListener("change", function (event) {
      var el = event.target;
      if (el.matches("select[data-variant-select]")) showVariant(el);
      if (el.matches("input[data-include]")) showBody(el);
      if (el.matches("textarea[data-raw-of]")) showRaw(el);
    });
    form.addEventListener("click", function (event) {
      var add = event.target.closest("button[data-add]");
      if (add) {
        var list = document.getElementById(add.getAttribute("data-add"));
        var template = rowsOf(list).querySelector(":scope > template");
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
      var mover = event.target.closest("button[data-move]");
      if (mover) {
        move(mover.closest(".item"), mover.getAttribute("data-move") === "up");
        mover.focus();
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
        // Not sent (another variant, an unticked part, beside raw JSON).
        if (el.matches(":disabled")) return;
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
        return;
      }
      text(runError, "");
      var maxBody = parseInt(form.getAttribute("data-max-body-bytes") || "0", 10);
      var size = maxBody > 0 ? bodySize() : 0;
      if (size > maxBody) {
        event.preventDefault();
        text(runError, "Not sent: this form is " + size + " bytes, over the server's limit of " +
          form.getAttribute("data-max-body-size") + ". What you typed is kept: shorten it, or start the " +
          "server with a larger --max-body-bytes (or TASKFLOW_MAX_BODY_BYTES).");
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
      // A status carries the progress as stored: none for a new attempt.
      if (task.progress) progress(task.progress.done, task.progress.total);
      else {
        document.getElementById("progress").hidden = true;
        text(document.getElementById("progress-text"), "");
      }
    };
    var progress = function (done, total) {
      var bar = document.getElementById("progress");
      bar.hidden = false;
      bar.max = Math.max(total, 1);
      bar.value = done;
      text(document.getElementById("progress-text"), done + " / " + total);
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
        else if (event.type === "progress") progress(event.done, event.total);
        else if (event.type === "deleted") {
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

  // Times: shown in the reader's zone and relative to now ("3 min ago"),
  // the exact UTC time as the tooltip; without the script, the UTC time.
  var relative = function (iso) {
    var then = new Date(iso);
    if (isNaN(then)) return iso;
    var seconds = Math.round((Date.now() - then.getTime()) / 1000);
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return then.toLocaleString();
  };
  var localize = function (root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      el.title = iso + " (" + new Date(iso).toLocaleString() + ")";
      text(el, relative(iso));
    });
  };
  var stamp = function (iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.textContent = iso;
    return el;
  };

  // History and recent runs: rows follow every run's status; on the first
  // page, a new run that fits the filter is added at the top.
  var history = document.getElementById("history");
  var rows = document.querySelectorAll("tr[data-task-id]");
  if ((history || rows.length) && !run) {
    if (history) {
      localize(history);
      setInterval(function () { localize(history); }, 30000);
    }
    var fits = function (task) {
      if (!history || history.getAttribute("data-live") !== "new") return false;
      var status = history.getAttribute("data-status");
      var title = history.getAttribute("data-task-title");
      return (!status || status === task.status) && (!title || title === task.task_title);
    };
    // "N runs" follows the rows: one more for each run added at the top,
    // one fewer for each deleted one shown here, or anywhere when the page
    // is not filtered (a deleted run elsewhere may not have matched).
    var count = document.getElementById("history-count");
    var recount = function (delta) {
      if (!count) return;
      var total = Math.max(0, parseInt(count.getAttribute("data-total") || "0", 10) + delta);
      count.setAttribute("data-total", String(total));
      text(count, total + (total === 1 ? " run" : " runs"));
    };
    var filtered = history && (history.getAttribute("data-status") || history.getAttribute("data-task-title"));
    var newRow = function (task) {
      var row = document.createElement("tr");
      row.setAttribute("data-task-id", task.task_id);
      var cell = function (child, role) {
        var td = document.createElement("td");
        if (role) td.setAttribute("data-role", role);
        if (child) td.appendChild(child);
        row.appendChild(td);
        return td;
      };
      var badge = document.createElement("span");
      badge.setAttribute("data-role", "status");
      cell(badge);
      var link = function (href, label) {
        var a = document.createElement("a");
        a.href = href;
        a.textContent = label;
        return a;
      };
      cell(link("/functions/" + encodeURIComponent(task.task_title), task.task_title));
      cell(link("/runs/" + task.task_id, task.task_id));
      cell(null, "attempt");
      cell(stamp(task.created_at));
      cell(null, "finished");
      var body = history.querySelector("tbody");
      body.insertBefore(row, body.firstChild);
      var empty = document.querySelector("p.empty");
      if (empty) empty.hidden = true;
      recount(1);
      return row;
    };
    var events = new WebSocket(wsUrl("/api/v1/events/ws"));
    // From here on no run is missed (the server subscribed before the
    // upgrade); said on the table for whoever waits for it.
    events.onopen = function () { if (history) history.setAttribute("data-connected", "true"); };
    events.onmessage = function (message) {
      var event = JSON.parse(message.data);
      // Events were missed: the page, read again, is right.
      if (event.type === "resync") { location.reload(); return; }
      if (event.type === "deleted" && history) {
        var gone = history.querySelector('tr[data-task-id="' + event.task_id + '"]');
        if (gone) gone.remove();
        if (gone || !filtered) recount(-1);
        return;
      }
      if (event.type !== "status") return;
      var task = event.task;
      var row = document.querySelector('tr[data-task-id="' + task.task_id + '"]');
      if (!row) {
        if (!fits(task)) return;
        row = newRow(task);
      }
      var badge = row.querySelector("[data-role=status]");
      badge.className = "badge " + task.status;
      text(badge, task.status);
      var attempt = row.querySelector("[data-role=attempt]");
      if (attempt) text(attempt, task.attempt + "/" + task.max_attempts);
      var finished = row.querySelector("[data-role=finished]");
      if (finished && task.finished_at && !finished.firstChild) finished.appendChild(stamp(task.finished_at));
      if (history) localize(row);
    };
  }
})();
