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

  // The key holder's page (/ui/me): the key lives in this tab's sessionStorage only and is
  // sent to this relay's /v1/relay/usage; everything is written with textContent.
  var meKey = "claude-relay-key";

  function fmtInt(n) { return Number(n || 0).toLocaleString("en-US", { maximumFractionDigits: 0 }); }
  function fmtUSD(v) {
    v = Number(v || 0);
    if (v !== 0 && Math.abs(v) < 0.01) { return "$" + v.toFixed(4); }
    return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function fmtAmount(v, unit) {
    if (unit === "usd") { return fmtUSD(v); }
    return fmtInt(v) + " " + unit;
  }
  function fmtWhen(iso) {
    if (!iso) { return "never (a total)"; }
    var d = new Date(iso), secs = Math.round((d.getTime() - Date.now()) / 1000), a = Math.abs(secs), rel;
    if (a < 90) { rel = a + " s"; } else if (a < 5400) { rel = Math.round(a / 60) + " min"; } else if (a < 172800) { rel = Math.round(a / 3600) + " h"; } else { rel = Math.round(a / 86400) + " days"; }
    rel = secs >= 0 ? "in " + rel : rel + " ago";
    return rel + " (" + d.toISOString().replace(".000Z", "Z").replace("T", " ") + ")";
  }
  function row(tbody, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      td.textContent = c[0];
      if (c[1]) { td.className = c[1]; }
      if (c[2]) { td.setAttribute("data-label", c[2]); }
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }
  function showView(v) {
    document.getElementById("me-name").textContent = v.key.name;
    document.getElementById("me-about").textContent = "Key " + v.key.id + " · " + v.key.status +
      (v.key.policy ? " · policy " + v.key.policy : "") + (v.key.expires_at ? " · expires " + fmtWhen(v.key.expires_at) : "") +
      " · " + fmtInt(v.concurrency.in_use) + " in flight" + (v.concurrency.limit ? " of " + fmtInt(v.concurrency.limit) : "");
    var lim = document.querySelector("#me-limits tbody");
    lim.textContent = "";
    v.limits.forEach(function (l) {
      row(lim, [[l.name, "", "Limit"], [fmtAmount(l.used, l.unit), "num", "Used"], [fmtAmount(l.remaining, l.unit), "num", "Remaining"],
        [fmtAmount(l.limit, l.unit), "num", "Of"], [fmtWhen(l.resets_at), "", "Resets"]]);
    });
    if (!v.limits.length) { row(lim, [["This key has no limits.", "muted"]]); }
    var sp = document.querySelector("#me-spend tbody");
    sp.textContent = "";
    [["Today (UTC)", v.spend.today], ["This week", v.spend.this_week], ["This month", v.spend.this_month]].forEach(function (p) {
      var u = p[1];
      row(sp, [[p[0], "", "Period"], ["all models", "", "Model"], [fmtInt(u.requests), "num", "Requests"], [fmtInt(u.input_tokens), "num", "Input"],
        [fmtInt(u.output_tokens), "num", "Output"], [fmtUSD(u.cost_usd), "num", "Cost"]]);
      Object.keys(u.by_model || {}).sort().forEach(function (m) {
        var b = u.by_model[m];
        row(sp, [["", "", "Period"], [m, "", "Model"], [fmtInt(b.requests), "num", "Requests"], [fmtInt(b.input_tokens), "num", "Input"],
          [fmtInt(b.output_tokens), "num", "Output"], [fmtUSD(b.cost_usd), "num", "Cost"]]);
      });
    });
    var t = v.spend.total;
    row(sp, [["Total", "", "Period"], ["all models", "", "Model"], [fmtInt(t.requests), "num", "Requests"], [fmtInt(t.input_tokens), "num", "Input"],
      [fmtInt(t.output_tokens), "num", "Output"], [fmtUSD(t.cost_usd), "num", "Cost"]]);
    document.getElementById("me-out").hidden = false;
  }
  function meError(msg) {
    var e = document.getElementById("me-error");
    e.textContent = msg;
    e.hidden = !msg;
    if (msg) { document.getElementById("me-out").hidden = true; }
  }
  function loadMe() {
    var key = sessionStorage.getItem(meKey);
    document.getElementById("me-forget").hidden = !key;
    if (!key) { return; }
    fetch("/v1/relay/usage", { headers: { "x-api-key": key }, cache: "no-store", credentials: "omit" }).then(function (resp) {
      return resp.json().then(function (body) {
        if (!resp.ok) {
          throw new Error((body && body.error && body.error.message) || ("the relay answered " + resp.status));
        }
        meError("");
        showView(body);
      });
    }).catch(function (err) { meError("Could not read this key's usage: " + err.message); });
  }
  function mePage() {
    var form = document.getElementById("me-form");
    if (!form) { return; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = document.getElementById("me-key");
      sessionStorage.setItem(meKey, input.value.trim());
      input.value = "";
      loadMe();
    });
    document.getElementById("me-forget").addEventListener("click", function () {
      sessionStorage.removeItem(meKey);
      document.getElementById("me-out").hidden = true;
      meError("");
      loadMe();
    });
    loadMe();
  }

  document.addEventListener("securitypolicyviolation", function (ev) {
    console.error("CSP violation: " + ev.violatedDirective + " " + ev.blockedURI);
  });
  document.addEventListener("DOMContentLoaded", function () {
    copyButtons();
    confirmations();
    refresh();
    localTimes();
    mePage();
  });
})();
