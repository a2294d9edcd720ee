// claude-relay console: the only script the pages load (the Content-Security-Policy allows
// no other). Everything works without it; it adds copy buttons, confirmations before
// destructive changes, the dashboard's self-refresh, local times, and reports CSP violations
// to the console (the browser tests fail on them).
(function () {
  "use strict";

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (btn) {
      btn.hidden = false;
      btn.addEventListener("click", function () {
        var src = document.getElementById(btn.getAttribute("data-copy"));
        if (!src) { return; }
        var text = src.value !== undefined ? src.value : src.textContent;
        var done = function () {
          var label = btn.textContent;
          btn.textContent = "Copied";
          setTimeout(function () { btn.textContent = label; }, 2000);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectIn(src); });
        } else {
          selectIn(src);
          try { document.execCommand("copy"); done(); } catch (e) { /* selected for the user */ }
        }
      });
    });
  }

  function selectIn(el) {
    if (el.select) { el.focus(); el.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  }

  function refresh() {
    var secs = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (secs > 0) {
      setTimeout(function () {
        // Not while the person is typing or has a dialog open.
        if (document.visibilityState === "visible" && !document.querySelector("input:focus, textarea:focus, select:focus")) {
          window.location.reload();
        } else {
          refresh();
        }
      }, secs * 1000);
    }
  }

  function localTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime()) && !t.title) { t.title = d.toLocaleString(); }
    });
  }

  document.addEventListener("securitypolicyviolation", function (ev) {
    console.error("CSP violation: " + ev.violatedDirective + " " + ev.blockedURI);
  });
  document.addEventListener("DOMContentLoaded", function () {
    copyButtons();
    confirmations();
    refresh();
    localTimes();
  });
})();
