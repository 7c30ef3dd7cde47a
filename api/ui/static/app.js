// The first page of the workload list refreshes every 5 s: not while the tab is hidden, not
// while keyboard focus is inside the list, not when paused, and only when something changed.
(function () {
  "use strict";
  var list = document.getElementById("list");
  if (!list || !list.dataset.refresh) { return; }
  var live = document.getElementById("live");
  var pause = document.getElementById("pause");
  var paused = false;
  if (pause) {
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume updates" : "Pause updates";
    });
  }
  function refresh() {
    if (paused || document.hidden || list.contains(document.activeElement)) { return; }
    fetch(list.dataset.refresh, { credentials: "same-origin" })
      .then(function (res) {
        if (res.status === 401) {
          window.location = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (html && html.trim() !== list.innerHTML.trim()) {
          list.innerHTML = html;
          if (live) { live.textContent = "Updated at " + new Date().toLocaleTimeString() + "."; }
        }
      })
      .catch(function () { if (live) { live.textContent = "Could not refresh; retrying."; } });
  }
  window.setInterval(refresh, 5000);
}());
