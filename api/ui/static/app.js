// The workload list refreshes its rows every 5 s (not while the tab is hidden).
(function () {
  "use strict";
  var rows = document.getElementById("rows");
  if (!rows || !rows.dataset.refresh) { return; }
  var live = document.getElementById("live");
  function refresh() {
    if (document.hidden) { return; }
    fetch(rows.dataset.refresh, { credentials: "same-origin" })
      .then(function (res) {
        if (res.status === 401) { window.location = "/ui/login"; return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          rows.innerHTML = html;
          if (live) { live.textContent = "Updated " + new Date().toLocaleTimeString() + "; updates every 5 seconds."; }
        }
      })
      .catch(function () { if (live) { live.textContent = "Could not refresh; retrying."; } });
  }
  window.setInterval(refresh, 5000);
}());
