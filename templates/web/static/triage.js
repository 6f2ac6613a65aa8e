// Relais triage pages: live updates, bulk selection, "who is looking". No build step, no inline script
// (the CSP is script-src 'self'). Everything works without it except the live parts.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var status = document.getElementById("live-status");

  function say(text) { if (status && text) { status.textContent = text; } }

  function listen(onItem) {
    if (!window.EventSource) { return; }
    var source = new EventSource("/ui/events");
    source.addEventListener("open", function () { if (status) { say(status.dataset.connected); } });
    source.addEventListener("error", function () { if (status) { say(status.dataset.lost); } });
    source.addEventListener("item", function (e) {
      var data;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      onItem(data);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // --- the queue ---------------------------------------------------------------------------
  var rows = document.getElementById("queue-rows");
  var all = document.getElementById("select-all");
  var count = document.getElementById("bulk-count");

  function picks() { return rows ? Array.prototype.slice.call(rows.querySelectorAll("input.pick")) : []; }

  function updateCount() {
    var n = picks().filter(function (box) { return box.checked; }).length;
    if (count) { count.textContent = n ? "(" + n + ")" : ""; }
    if (all) { all.checked = n > 0 && n === picks().length; }
  }

  function refreshRows() {
    var url = rows.dataset.refresh;
    url += (url.indexOf("?") >= 0 ? "&" : "?") + "partial=rows";
    var checked = {};
    picks().forEach(function (box) { if (box.checked) { checked[box.value] = true; } });
    var before = {};
    Array.prototype.forEach.call(rows.querySelectorAll("tr[data-item]"), function (tr) { before[tr.dataset.item] = true; });
    var focused = document.activeElement && document.activeElement.classList.contains("pick") ? document.activeElement.value : null;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        rows.innerHTML = html;  // server-rendered and escaped by Jinja2
        picks().forEach(function (box) { box.checked = !!checked[box.value]; });
        Array.prototype.forEach.call(rows.querySelectorAll("tr[data-item]"), function (tr) {
          if (!before[tr.dataset.item]) { tr.classList.add("fresh"); }
        });
        if (focused) {
          var again = rows.querySelector('input.pick[value="' + focused + '"]');
          if (again) { again.focus(); }
        }
        updateCount();
        say(status && status.dataset.updated);
      })
      .catch(function () { /* the next event tries again */ });
  }

  if (rows) {
    var timer = null;
    listen(function () {
      clearTimeout(timer);
      timer = setTimeout(refreshRows, 300);
    });
    if (all) {
      all.hidden = false;
      all.addEventListener("change", function () {
        picks().forEach(function (box) { box.checked = all.checked; });
        updateCount();
      });
    }
    rows.addEventListener("change", function (e) { if (e.target.classList.contains("pick")) { updateCount(); } });
  }

  // --- one item ----------------------------------------------------------------------------
  var page = document.querySelector('[data-live="item"]');
  if (page) {
    var itemId = page.dataset.item;
    var viewers = document.getElementById("viewers");
    var beat = function (leaving) {
      var body = new URLSearchParams({ _csrf: csrf });
      if (leaving) { body.set("leaving", "1"); }
      return fetch("/ui/items/" + itemId + "/viewers", {
        method: "POST", credentials: "same-origin", body: body, keepalive: !!leaving,
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (!data || !viewers) { return; }
        if (data.viewers.length) {
          viewers.textContent = viewers.dataset.one.replace("{names}", data.viewers.join(", "));
          viewers.hidden = false;
        } else {
          viewers.textContent = "";
          viewers.hidden = true;
        }
      }).catch(function () {});
    };
    beat(false);
    var every = setInterval(function () { beat(false); }, 5000);
    window.addEventListener("pagehide", function () { clearInterval(every); beat(true); });
    listen(function (data) {
      if (String(data.item_id) === String(itemId) && data.event !== "viewer") {
        say(status && status.dataset.changed);
      }
    });
  }
})();
