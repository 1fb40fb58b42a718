// wardwatch board: fetch /ui/board.json every `data-refresh` seconds and swap the two tables;
// tick every deadline countdown once a second against the server's clock. No framework.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var skewMs = 0;   // server clock minus this browser's clock

  function setSkew(serverIso) {
    var t = Date.parse(serverIso);
    if (!isNaN(t)) { skewMs = t - Date.now(); }
  }

  function clock(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h + ":" + (m < 10 ? "0" : "") + m + ":" + (sec < 10 ? "0" : "") + sec;
  }

  function tick() {
    var now = Date.now() + skewMs;
    var spans = document.querySelectorAll(".countdown");
    for (var i = 0; i < spans.length; i++) {
      var el = spans[i];
      if (el.getAttribute("data-met")) {
        el.className = "countdown met";
        continue;   // the server's text says when it was met
      }
      var left = Date.parse(el.getAttribute("data-due")) - now;
      if (left >= 0) {
        el.textContent = el.getAttribute("data-left") + " " + clock(left);
        el.className = "countdown" + (left < 5 * 60 * 1000 ? " soon" : "");
      } else {
        el.textContent = el.getAttribute("data-overdue") + " " + clock(left);
        el.className = "countdown overdue";
      }
    }
  }

  function refresh() {
    var status = document.getElementById("updated");
    fetch("/ui/board.json", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) {
        if (resp.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(location.pathname);
          throw new Error("session ended");
        }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (data) {
        setSkew(data.now);
        // server-rendered, escaped fragments: the same templates as the first page load
        document.getElementById("systems-body").innerHTML = data.html.systems;
        document.getElementById("incidents-body").innerHTML = data.html.incidents;
        document.getElementById("updated-at").textContent = data.html.updated;
        board.setAttribute("data-now", data.now);
        status.classList.remove("bad");
        tick();
      })
      .catch(function () {
        status.classList.add("bad");
      });
  }

  if (board) {
    setSkew(board.getAttribute("data-now"));
    var every = parseFloat(board.getAttribute("data-refresh")) || 5;
    window.setInterval(refresh, every * 1000);
  }
  tick();
  window.setInterval(tick, 1000);
})();
