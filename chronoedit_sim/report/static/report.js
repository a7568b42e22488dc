/* chronoedit-sim report: the gallery, paged. cards/index.js holds what filtering and sorting need
   (an edit number, an outcome and the scores of every row); cards/c<N>.js holds the details of 100
   rows and is loaded only when one of its cards is shown. Every value from the dataset is put into
   the page with textContent or a DOM attribute, never parsed as HTML. */
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("report-meta").textContent);
  var index = null, chunks = {}, waiting = {}, order = [], page = 0, drawing = 0, painted = false;
  var scenarioOf = [];
  var grid = document.getElementById("cards");

  function byId(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function option(select, value, label) {
    var node = el("option", null, label);
    node.value = value;
    select.appendChild(node);
  }

  window.CE_REPORT = {
    index: function (data) { index = data; setup(); },
    chunk: function (n, rows) {
      chunks[n] = rows;
      (waiting[n] || []).forEach(function (done) { done[0](rows); });
      delete waiting[n];
    }
  };

  // a chunk file, loaded once, as a script element (file:// pages may not fetch)
  function chunk(n) {
    return new Promise(function (resolve, reject) {
      if (chunks[n]) { resolve(chunks[n]); return; }
      var first = !waiting[n];
      (waiting[n] = waiting[n] || []).push([resolve, reject]);
      if (!first) return;
      var script = document.createElement("script");
      script.src = (meta.assets || "") + "cards/c" + ("0000" + n).slice(-5) + ".js";
      script.onerror = function () {
        (waiting[n] || []).forEach(function (done) { done[1](new Error("cannot load " + script.src)); });
        delete waiting[n];
      };
      document.head.appendChild(script);
    });
  }

  function setup() {
    var scenarios = [];
    index.edits.forEach(function (key, i) {
      var scenario = key.split("/")[0];
      scenarioOf[i] = scenario;
      if (scenarios.indexOf(scenario) < 0) scenarios.push(scenario);
      option(byId("f-edit"), key, key);
    });
    scenarios.sort().forEach(function (s) { option(byId("f-scenario"), s, s); });
    meta.scores.forEach(function (name) {
      if (!index.scores[name].some(function (v) { return v !== null; })) return;
      option(byId("sort"), name + ":desc", name + " (high first)");
      option(byId("sort"), name + ":asc", name + " (low first)");
    });
    ["f-scenario", "f-edit", "f-outcome", "sort"].forEach(function (id) { byId(id).addEventListener("change", apply); });
    byId("prev").addEventListener("click", function () { if (page > 0) { page--; draw(); } });
    byId("next").addEventListener("click", function () {
      if ((page + 1) * meta.pageSize < order.length) { page++; draw(); }
    });
    apply();
  }

  function apply() {
    var scenario = byId("f-scenario").value, edit = byId("f-edit").value, outcome = byId("f-outcome").value;
    var sort = byId("sort").value;
    order = [];
    for (var i = 0; i < index.edit.length; i++) {
      var e = index.edit[i];
      if (scenario && scenarioOf[e] !== scenario) continue;
      if (edit && index.edits[e] !== edit) continue;
      if (outcome && meta.outcomes[index.outcome[i]] !== outcome) continue;
      order.push(i);
    }
    if (sort) {
      var parts = sort.split(":"), values = index.scores[parts[0]], dir = parts[1] === "asc" ? 1 : -1;
      order.sort(function (a, b) {  // missing scores last, ties in dataset order
        var x = values[a], y = values[b];
        if (x === null || y === null) return x === y ? a - b : (x === null ? 1 : -1);
        return (x - y) * dir || a - b;
      });
    }
    page = 0;
    draw();
  }

  function draw() {
    var token = ++drawing, ids = order.slice(page * meta.pageSize, (page + 1) * meta.pageSize);
    var needed = [];
    ids.forEach(function (i) {
      var n = Math.floor(i / meta.chunkRows);
      if (needed.indexOf(n) < 0) needed.push(n);
    });
    grid.dataset.state = "loading";
    Promise.all(needed.map(chunk)).then(function () {
      if (token !== drawing) return;  // a newer filter or page won
      grid.replaceChildren.apply(grid, ids.map(card));
      var pages = Math.max(1, Math.ceil(order.length / meta.pageSize));
      byId("pager").textContent = "page " + (page + 1) + " of " + pages + " (" + order.length + " of " +
        index.edit.length + " rows)";
      grid.dataset.state = "ready";
      if (!painted) { painted = true; performance.mark("ce-cards"); }
    }, function (err) {
      grid.dataset.state = "error";
      byId("pager").textContent = err.message;
    });
  }

  function details(i) { return chunks[Math.floor(i / meta.chunkRows)][i % meta.chunkRows]; }

  function picture(src, label, onclick) {
    var fig = el("figure");
    if (src) {
      var img = el("img");
      img.loading = "lazy";
      img.alt = label;
      img.src = src;
      if (onclick) img.addEventListener("click", onclick);
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "missing", "no image"));
    }
    fig.appendChild(el("figcaption", null, label));
    return fig;
  }

  // the trajectory as one figure that plays its frames (hover or click), and below it the whole strip
  function trajectory(src, frames) {
    var fig = el("figure", "player"), film = el("img");
    film.alt = "reasoning trajectory (" + frames + " frames): hover or click to play";
    film.src = src;
    film.style.width = frames * 100 + "%";
    var view = el("div", "view");
    view.appendChild(film);
    fig.appendChild(view);
    fig.appendChild(el("figcaption", null, "trajectory, " + frames + " frames \u25b6"));
    var k = 0, timer = null;
    function step() {
      k = (k + 1) % frames;
      film.style.transform = "translateX(" + (-100 * k / frames) + "%)";
    }
    function play() { if (!timer) timer = setInterval(step, 150); }
    function stop() { clearInterval(timer); timer = null; }
    fig.addEventListener("mouseenter", play);
    fig.addEventListener("mouseleave", stop);
    fig.addEventListener("click", function () { if (timer) stop(); else play(); });
    return fig;
  }

  function strip(src) {
    var wrap = el("div", "strip"), img = el("img");
    img.alt = "reasoning trajectory strip";
    img.loading = "lazy";
    img.src = src;
    wrap.appendChild(img);
    return wrap;
  }

  function scoreList(i, all) {
    var dl = el("dl", "scores");
    meta.scores.forEach(function (name) {
      var v = index.scores[name][i];
      if (v === null && !all) return;
      dl.appendChild(el("dt", null, name));
      dl.appendChild(el("dd", null, v === null ? "-" : v.toFixed(3)));
    });
    return dl;
  }

  function verdict(d, node) {
    if (d.reasons.length) {
      var ul = el("ul", "reasons");
      d.reasons.forEach(function (r) { ul.appendChild(el("li", null, r)); });
      node.appendChild(ul);
    }
    if (d.error) node.appendChild(el("p", "error", d.error));  // "<stage>: <message>"
  }

  function card(i) {
    var d = details(i), outcome = meta.outcomes[index.outcome[i]], key = index.edits[index.edit[i]];
    var node = el("article", "card " + outcome);
    node.dataset.outcome = outcome;
    node.dataset.row = i;
    var head = el("header");
    head.appendChild(el("span", "badge " + outcome, outcome));
    head.appendChild(el("span", "key", key + " #" + d.sample));
    node.appendChild(head);
    var open = function () { show(i); };
    var pics = el("div", "pics");
    pics.appendChild(picture(d.thumbs.source, "source", open));
    pics.appendChild(picture(d.thumbs.edited, "edit", open));
    if (d.thumbs.trajectory) pics.appendChild(trajectory(d.thumbs.trajectory, d.thumbs.frames));
    node.appendChild(pics);
    if (d.thumbs.trajectory) node.appendChild(strip(d.thumbs.trajectory));
    node.appendChild(el("p", "prompt", d.prompt));
    node.appendChild(scoreList(i, false));
    verdict(d, node);
    var button = el("button", "open", "open");
    button.type = "button";
    button.addEventListener("click", open);
    node.appendChild(button);
    return node;
  }

  // the viewer: full-size source and edit (as stored), the trajectory, and everything about the row
  function show(i) {
    var d = details(i), body = byId("viewer-body"), key = index.edits[index.edit[i]];
    var pics = el("div", "full");
    [["source", "source"], ["edited", "edit"]].forEach(function (pair) {
      var src = d.full[pair[0]] || d.thumbs[pair[0]];
      var fig = picture(src, pair[1] + (d.full[pair[0]] ? " (full size)" : " (thumbnail)"));
      if (src) {
        var link = el("a", null, "open the image on its own");
        link.href = src;
        link.target = "_blank";
        fig.appendChild(link);
      }
      pics.appendChild(fig);
    });
    var info = el("dl", "info");
    [["outcome", meta.outcomes[index.outcome[i]]], ["edit", key + " #" + d.sample], ["job_id", d.job],
     ["source_id", d.source], ["reasoning", d.kind || "none"], ["target caption", d.caption],
     ["prompt", d.prompt]].forEach(function (pair) {
      info.appendChild(el("dt", null, pair[0]));
      info.appendChild(el("dd", null, pair[1]));
    });
    if (d.thumbs.trajectory) pics.appendChild(trajectory(d.thumbs.trajectory, d.thumbs.frames));
    var nodes = [el("h3", null, key + " #" + d.sample), pics];
    if (d.thumbs.trajectory) nodes.push(strip(d.thumbs.trajectory));
    nodes.push(info, scoreList(i, true));
    body.replaceChildren.apply(body, nodes);
    verdict(d, body);
    byId("viewer").showModal();
  }
}());
