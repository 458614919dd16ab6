/// The page's only stylesheet and script, served by kithd itself (no CDN, no build step).
/// The script is an enhancement: every read page and the core forms work without it.
public enum WebAssets {
    public static let css = """
    :root { --fg: #111; --bg: #fff; --muted: #4a4a4a; --line: #c8c8c8; --accent: #0b57a4; --danger: #a4161a; --note: #eef5ec; --focus: #f2a900; }
    * { box-sizing: border-box; }
    html { font-size: 112.5%; }
    body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; line-height: 1.5; color: var(--fg); background: var(--bg); }
    main { max-width: 52rem; margin: 0 auto; padding: 1rem; overflow-wrap: break-word; }
    header { background: #1d2b3a; }
    nav { max-width: 52rem; margin: 0 auto; padding: .25rem .5rem; display: flex; flex-wrap: wrap; gap: .25rem .5rem; align-items: center; }
    nav a, nav button.link { color: #fff; padding: .4rem .5rem; text-decoration: none; border-radius: .25rem; font-size: .95rem; }
    nav a[aria-current="page"] { background: #fff; color: #1d2b3a; font-weight: 600; }
    nav form { margin-left: auto; }
    nav.chapters { display: block; max-width: none; margin: 0 0 .5rem; padding: 0; }
    nav.chapters ul { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .5rem; }
    nav.chapters a { color: var(--accent); border: 1px solid var(--accent); }
    nav.chapters a[aria-current="page"] { background: var(--accent); color: #fff; }
    a { color: var(--accent); }
    a:focus, button:focus, input:focus, select:focus, textarea:focus, summary:focus { outline: 3px solid var(--focus); outline-offset: 2px; }
    .skip { position: absolute; left: -999px; }
    .skip:focus { left: .5rem; top: .5rem; background: #fff; padding: .5rem; z-index: 2; }
    h1 { font-size: 1.6rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
    h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
    h3 { font-size: 1.05rem; }
    label { font-weight: 600; }
    input, select, textarea, button, .button { font: inherit; font-size: 1rem; }
    input, select, textarea { padding: .5rem; border: 2px solid #6b6b6b; border-radius: .3rem; max-width: 100%; background: #fff; color: var(--fg); }
    input[type=checkbox], input[type=radio] { width: 1.2rem; height: 1.2rem; vertical-align: middle; }
    button, .button { display: inline-block; padding: .5rem 1rem; border: 2px solid var(--accent); border-radius: .3rem; background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; min-height: 2.75rem; }
    button.secondary { background: #fff; color: var(--accent); }
    button.danger, .button.danger { background: var(--danger); border-color: var(--danger); color: #fff; }
    button.small { padding: .1rem .5rem; min-height: 2rem; }
    button.link { background: none; border: none; min-height: 0; }
    form.inline { display: inline; }
    .stack { display: flex; flex-direction: column; gap: .35rem; max-width: 32rem; }
    .stack button { align-self: flex-start; margin-top: .5rem; }
    .row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0; }
    .search { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
    .search input { flex: 1 1 14rem; }
    fieldset { border: 1px solid var(--line); border-radius: .3rem; margin: .5rem 0; padding: .5rem; }
    legend { font-weight: 600; padding: 0 .25rem; }
    fieldset > label:not(.chip), fieldset > input { display: block; margin-bottom: .35rem; }
    .chip { display: inline-flex; gap: .35rem; align-items: center; font-weight: 400; margin: .2rem .6rem .2rem 0; min-height: 2.2rem; }
    .log fieldset button { margin: .2rem .3rem .2rem 0; }
    .cards { list-style: none; padding: 0; margin: 0; }
    .cards li { padding: .6rem .25rem; border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: baseline; }
    .cards a { font-weight: 600; font-size: 1.05rem; }
    .tag { display: inline-block; background: #e6ecf3; color: #1d2b3a; border-radius: .8rem; padding: 0 .55rem; font-size: .9rem; }
    .tags { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .5rem; }
    .muted { color: var(--muted); overflow-wrap: anywhere; }
    .fields { display: grid; grid-template-columns: minmax(8rem, 16rem) 1fr; gap: .3rem 1rem; }
    .fields dt { font-weight: 600; }
    .fields dd { margin: 0; overflow-wrap: anywhere; }
    .pre { white-space: pre-wrap; }
    .dup + .dup::before { content: "= "; color: var(--muted); }
    .error { color: var(--danger); font-weight: 600; }
    .warning { border-left: 6px solid var(--danger); padding: .5rem 1rem; background: #fbeaea; }
    .notice { border-left: 6px solid #2e7d32; padding: .5rem 1rem; background: var(--note); }
    .big { font-size: 1.3rem; font-weight: 600; }
    code { font-size: .9rem; overflow-wrap: anywhere; }
    .wrap { word-break: break-all; }
    .phones { white-space: nowrap; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: .35rem; border-bottom: 1px solid var(--line); vertical-align: top; }
    .grant { border: 1px solid var(--line); border-radius: .4rem; padding: .25rem 1rem 1rem; margin: 1rem 0; }
    .qr svg { max-width: 100%; height: auto; }
    progress { width: 100%; height: 1.5rem; }
    .live-note { position: fixed; bottom: .5rem; right: .5rem; margin: 0; background: #1d2b3a; color: #fff; padding: .25rem .75rem; border-radius: .3rem; }
    .live-note:empty { display: none; }
    @media (max-width: 36rem) {
      html { font-size: 106%; }
      .fields { grid-template-columns: 1fr; }
      .fields dd { margin-bottom: .5rem; }
      .search label, .search input { flex-basis: 100%; }
      #map thead { display: none; }
      #map tr { display: block; padding: .4rem 0; border-bottom: 1px solid var(--line); }
      #map td { display: block; border: none; padding: .1rem .35rem; }
      #map td:first-child { font-weight: 600; }
      #map td:empty { display: none; }
      #map td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-weight: 400; }
    }
    """

    public static let js = """
    "use strict";
    (function () {
      var meta = document.querySelector('meta[name="kith-csrf"]');
      var csrf = meta ? meta.content : null;
      if (!csrf) return;
      function fetchPart(url, part) {
        return fetch(url, { headers: { "X-Kith-Fragment": part, "X-CSRF-Token": csrf }, credentials: "same-origin" })
          .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); });
      }
      // Search as you type: the result list is replaced in place; the address follows.
      var search = document.querySelector("input[data-live-search]");
      if (search) {
        var pending = null, seq = 0;
        search.addEventListener("input", function () {
          var q = search.value, mine = ++seq, started = performance.now();
          var url = search.getAttribute("data-live-search") + (q ? "?q=" + encodeURIComponent(q) : "");
          if (pending) pending.abort();
          pending = new AbortController();
          fetch(url, { headers: { "X-Kith-Fragment": "list", "X-CSRF-Token": csrf }, signal: pending.signal, credentials: "same-origin" })
            .then(function (r) { return r.text(); })
            .then(function (html) {
              if (mine !== seq) return;
              document.getElementById("results").innerHTML = html;
              history.replaceState(null, "", url);
              window.kithLastSearch = { q: q, ms: performance.now() - started };
            }).catch(function () {});
        });
      }
      // Live updates: when the node reports a change, refresh <main> (not while a form is being filled in).
      var main = document.getElementById("main");
      var note = document.getElementById("live-note");
      // A person in a form field (other than the search box), or who changed one in the last
      // 10 seconds, is not interrupted: the refresh waits.
      var changedAt = 0;
      ["input", "change"].forEach(function (type) {
        document.addEventListener(type, function (e) { if (!e.target.hasAttribute("data-live-search")) changedAt = Date.now(); });
      });
      function typing() {
        var a = document.activeElement;
        if (Date.now() - changedAt < 10000) return true;
        return a && (a.tagName === "TEXTAREA" || a.tagName === "SELECT" ||
          (a.tagName === "INPUT" && ["submit", "button", "checkbox", "radio"].indexOf(a.type) < 0 && !a.hasAttribute("data-live-search")));
      }
      // A contact's page refreshes only for changes of that contact.
      function concerns(event) {
        var shown = document.querySelector("[data-contact]");
        if (!shown || event.type !== "contacts-changed") return true;
        try {
          var ids = JSON.parse(event.data).contacts;
          return !ids || ids.length >= 100 || ids.indexOf(shown.getAttribute("data-contact")) >= 0;
        } catch (e) { return true; }
      }
      if (main && main.hasAttribute("data-live") && window.EventSource) {
        var timer = null;
        var refresh = function () {
          timer = null;
          if (typing()) { timer = setTimeout(refresh, 1000); return; }
          // The contact list refreshes only its results, so the search box keeps focus and text.
          var results = document.getElementById("results");
          var part = results && search ? "list" : "main";
          fetchPart(location.href, part).then(function (html) {
            // A box the person opened (another chapter, a form) stays open across the refresh.
            var opened = [];
            main.querySelectorAll("details").forEach(function (d, i) { if (d.open) opened.push(i); });
            (part === "list" ? results : main).innerHTML = html;
            var boxes = main.querySelectorAll("details");
            opened.forEach(function (i) { if (boxes[i]) boxes[i].open = true; });
            if (note) { note.textContent = note.getAttribute("data-text") || ""; setTimeout(function () { note.textContent = ""; }, 3000); }
            window.kithLiveUpdates = (window.kithLiveUpdates || 0) + 1;
          }).catch(function () {});
        };
        var events = new EventSource("/v1/events?csrf=" + encodeURIComponent(csrf));
        ["contacts-changed", "peer-connected", "peer-disconnected", "consent", "sync-progress"].forEach(function (type) {
          events.addEventListener(type, function (e) { if (!timer && concerns(e)) timer = setTimeout(refresh, 150); });
        });
        window.addEventListener("beforeunload", function () { events.close(); });
      }
      // Share: the statement of what the chapter will see follows the ticked boxes.
      var statement = document.getElementById("share-statement");
      if (statement) {
        var update = function () {
          var names = [];
          document.querySelectorAll("#share-form input[name=fields]:checked").forEach(function (b) { names.push(b.parentNode.textContent.trim()); });
          statement.textContent = statement.getAttribute("data-prefix") + " ";
          var strong = document.createElement("strong");
          strong.textContent = names.length ? names.join(", ") : "–";
          statement.appendChild(strong);
          statement.appendChild(document.createTextNode(". " + statement.getAttribute("data-rest")));
        };
        document.querySelectorAll("#share-form input[name=fields]").forEach(function (b) { b.addEventListener("change", update); });
      }
      // Import progress: the bar follows the import until it is done.
      var bar = document.getElementById("progress");
      if (bar && bar.getAttribute("data-job") && !document.getElementById("done")) {
        var job = bar.getAttribute("data-job");
        var poll = function () {
          fetch("/import/" + job + "/progress", { headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
            .then(function (r) { return r.json(); })
            .then(function (p) {
              bar.max = p.total; bar.value = p.committed;
              var pct = document.getElementById("percent"); if (pct) pct.textContent = p.percent;
              if (p.finished) fetchPart(location.href, "main").then(function (html) { main.innerHTML = html; });
              else setTimeout(poll, 200);
            }).catch(function () { setTimeout(poll, 1000); });
        };
        poll();
      }
    })();
    """
}
