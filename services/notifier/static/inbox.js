// The inbox's live updates: asks the server every few seconds what changed since the
// position the page was given; replaces the results when something did, and says what in
// the page's live region ("1 new signal"). The page works without it (its refresh link).
(function () {
  "use strict";
  var root = document.getElementById("inbox");
  if (!root || !window.fetch || !window.JSON) {
    return;
  }
  var url = root.getAttribute("data-updates-url");
  var position = root.getAttribute("data-position") || "0";
  var seconds = parseInt(root.getAttribute("data-poll-seconds"), 10) || 15;
  var live = document.getElementById("inbox-live");
  var results = document.getElementById("inbox-results");
  var failures = 0;

  function schedule() {
    window.setTimeout(poll, seconds * 1000 * Math.min(1 + failures, 8));
  }

  function poll() {
    var separator = url.indexOf("?") >= 0 ? "&" : "?";
    window.fetch(url + separator + "since=" + encodeURIComponent(position), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      redirect: "error"
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("inbox updates: HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (update) {
        failures = 0;
        position = String(update.position);
        if (update.html) {
          results.innerHTML = update.html;
        }
        if (update.announcement) {
          live.textContent = update.announcement;
        }
      })
      .catch(function () {
        failures += 1;
        if (failures === 3) {
          live.textContent = "Live updates paused: use the refresh link.";
        }
      })
      .then(schedule);
  }

  schedule();
})();
