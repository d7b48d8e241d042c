// The gateway dashboard: reads the admin JSON every 2 s and redraws three tables.
// Plain DOM code, no framework, nothing loaded from outside the gateway.
"use strict";

const REFRESH_MS = 2000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(text, kind) { return el("span", { class: "badge " + (kind || "") }, text); }

const breakerKind = { closed: "ok", half_open: "warn", open: "bad", none: "" };

function list(xs, any) { return xs && xs.length ? xs.join(", ") : el("span", { class: "muted" }, any); }

function age(s) {
  if (s === undefined || s === null) return el("span", { class: "muted" }, "–");
  if (s < 0) return badge("no answer yet", "warn");
  const txt = s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return s > 600 ? badge(txt, "warn") : txt;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function instanceTable(ins) {
  if (!ins.length) return badge("no instances", "bad");
  const hasMesh = ins.some(i => i.mesh !== undefined);
  const head = el("tr", {}, el("th", {}, "instance"), el("th", {}, "address"), el("th", {}, "health"),
    el("th", { class: "num" }, "weight"), el("th", { class: "num" }, "in flight"), el("th", {}, "breaker"),
    hasMesh ? el("th", {}, "mesh") : null);
  const rows = ins.map(i => el("tr", { "data-instance": i.id },
    el("td", {}, el("code", {}, i.id)),
    el("td", {}, el("code", {}, i.address)),
    el("td", {}, i.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad")),
    el("td", { class: "num" }, i.weight),
    el("td", { class: "num" }, i.in_flight),
    el("td", { class: "breaker" }, badge(i.breaker.replace("_", "-"), breakerKind[i.breaker])),
    hasMesh ? el("td", {}, typeof i.mesh === "object" && i.mesh !== null ? JSON.stringify(i.mesh) : String(i.mesh)) : null));
  return el("table", { class: "instances" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function render(routes, services, limits, ready) {
  fill("routes", routes.map(r => el("tr", { "data-route": r.name },
    el("td", {}, el("strong", {}, r.name)), el("td", {}, list(r.methods, "any")),
    el("td", {}, list(r.hosts, "any")), el("td", {}, el("code", {}, r.path)), el("td", {}, r.service))));
  fill("services", services.map(s => {
    const healthy = s.instances.filter(i => i.healthy).length;
    return el("tr", { "data-service": s.name },
      el("td", {}, el("strong", {}, s.name), el("div", { class: "muted count" },
        s.instances.length + (s.instances.length === 1 ? " instance" : " instances") + ", " + healthy + " healthy")),
      el("td", {}, s.source),
      el("td", {}, instanceTable(s.instances)),
      el("td", {}, s.source === "consul" ? age(s.watch_age_seconds) : el("span", { class: "muted" }, "static")));
  }));
  fill("ratelimits", limits.length ? limits.map(p => el("tr", { "data-policy": p.name },
    el("td", {}, el("strong", {}, p.name)), el("td", {}, p.algorithm.replace("_", " ")),
    el("td", {}, p.requests + " / " + p.period + (p.algorithm === "token_bucket" ? ", burst " + p.burst : "")),
    el("td", {}, el("code", {}, p.key)), el("td", {}, p.store + (p.store === "redis" ? ", on error " + p.on_store_error : ""))))
    : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no rate_limit policies"))]);

  const all = services.flatMap(s => s.instances);
  document.getElementById("n-routes").textContent = routes.length;
  document.getElementById("n-services").textContent = services.length;
  document.getElementById("n-instances").textContent = all.length;
  document.getElementById("n-open").textContent = all.filter(i => i.breaker === "open").length;
  const r = document.getElementById("ready");
  r.textContent = ready.status === "ready" ? "ready" : (ready.reason || ready.status);
  r.className = "badge " + (ready.status === "ready" ? "ok" : "warn");
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.loaded = "true";
}

async function getJSON(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok && path.indexOf("readyz") < 0) throw new Error(path + ": HTTP " + res.status);
  return res.json();
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const [routes, services, limits, ready] = await Promise.all([
      getJSON("../admin/routes"), getJSON("../admin/services"), getJSON("../admin/ratelimits"), getJSON("../readyz")]);
    render(routes, services, limits, ready);
    err.hidden = true;
  } catch (e) {
    err.textContent = "Cannot reach the admin API: " + e.message;
    err.hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
