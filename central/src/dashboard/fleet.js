// The fleet overview, live: one server-sent event stream re-renders the rows this page
// shows, the state counts and the open alerts (the server renders them as the page does).
// Without this script the page is still right as of when it loaded.
(function () {
  "use strict";
  var table = document.getElementById("fleet");
  if (!table || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var ids = Array.prototype.map.call(table.querySelectorAll("tr[data-venue]"), function (tr) {
    return tr.getAttribute("data-venue");
  });
  var source = new EventSource("/live/overview?venues=" + encodeURIComponent(ids.join(",")));
  function replace(id, html) {
    var old = document.getElementById(id);
    if (old) { old.outerHTML = html; }
  }
  source.addEventListener("fleet", function (e) {
    var live = JSON.parse(e.data);
    Object.keys(live.rows).forEach(function (id) {
      var tr = table.querySelector('tr[data-venue="' + id + '"]');
      if (tr) { tr.outerHTML = live.rows[id]; }
    });
    replace("hub-counts", live.counts);
    replace("open-alerts", live.alerts);
    if (status) { status.textContent = "Live · updated " + live.at; }
    document.body.setAttribute("data-live-updates", String(Number(document.body.getAttribute("data-live-updates") || 0) + 1));
  });
  source.addEventListener("error", function () {
    if (status) { status.textContent = "Reconnecting to central for live updates…"; }
  });
}());
