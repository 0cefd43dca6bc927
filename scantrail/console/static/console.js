// ScanTrail console: sortable tables, the live queue (SSE) and the big screen's refresh.
"use strict";
(function () {
  function sortable(table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
        var asc = th.dataset.dir !== "asc";
        th.dataset.dir = asc ? "asc" : "desc";
        var num = th.dataset.sort === "num";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[idx] ? a.cells[idx].textContent.trim() : "";
          var y = b.cells[idx] ? b.cells[idx].textContent.trim() : "";
          var c = num ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  function refresh(url, target) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { window.location.reload(); return; }
      return r.text().then(function (html) { target.innerHTML = html; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(sortable);
    var queue = document.getElementById("queue");
    var screen = document.getElementById("screen");
    var banner = document.getElementById("escalations");
    var live = document.getElementById("live");
    var title = document.title;
    function escalationCount() {
      var b = document.getElementById("escalation-banner");
      return b ? parseInt(b.dataset.count, 10) || 0 : 0;
    }
    function showEscalations(before) {
      var now = escalationCount();
      document.title = now ? "(" + now + ") " + title : title;
      var b = document.getElementById("escalation-banner");
      if (b && now > before) { b.classList.add("fresh"); }
      var filter = document.getElementById("escalations-filter");
      if (filter) { filter.textContent = filter.textContent.replace(/\(\d+\)/, "(" + now + ")"); }
    }
    if (banner) { showEscalations(escalationCount()); }
    if (queue || screen || banner) {
      var source = new EventSource("/events");
      var pending = false;
      source.addEventListener("board", function () {
        if (live) { live.textContent = live.dataset.live; live.className = "live on"; }
        if (pending) { return; }
        pending = true;
        var jobs = [];
        if (queue) { jobs.push(refresh(queue.dataset.rows, document.getElementById("rows"))); }
        if (screen) { jobs.push(refresh(screen.dataset.refresh, screen)); }
        if (banner) {
          var before = escalationCount();
          jobs.push(refresh(banner.dataset.refresh, banner).then(function () { showEscalations(before); }));
        }
        var done = function () { pending = false; };
        Promise.all(jobs).then(done, done);
      });
      source.onerror = function () {
        if (live) { live.textContent = live.dataset.off; live.className = "live off"; }
      };
    }
    var progress = document.getElementById("replay-progress");
    if (progress) {
      var bar = document.getElementById("replay-bar");
      var status = document.getElementById("replay-status");
      var poll = setInterval(function () {
        fetch(progress.dataset.progress, { credentials: "same-origin", cache: "no-store" })
          .then(function (r) { return r.json(); })
          .then(function (p) {
            if (p.state !== "running") { clearInterval(poll); window.location.reload(); return; }
            if (p.total) { bar.max = p.total; bar.value = p.done; }
            status.textContent = p.phase === "reading"
              ? status.dataset.reading + " " + p.done + " / " + (p.total === null ? "?" : p.total) + " · " + p.seconds + " s"
              : status.dataset.other;
          });
      }, 700);
    }
    if (screen) {
      setInterval(function () { refresh(screen.dataset.refresh, screen); }, 5000);
    }
  });
})();
