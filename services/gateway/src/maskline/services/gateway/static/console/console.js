"use strict";
// What every console page shares (no build step): who is signed in (GET /v1/me), the navigation
// bar, and `api()`, which sends the session's CSRF token with every change. The session is an
// HttpOnly cookie: no key or token of the visitor's is ever in a page's address or its storage.
// A visitor who is not signed in is sent to /sign-in, and back here afterwards.
const maskline = (() => {
  const PAGES = [
    ["/segment", "Segment"], ["/jobs", "Jobs"], ["/files", "Files"], ["/datasets", "Datasets"], ["/models", "Models"],
    ["/experiments", "Experiments"], ["/federations", "Federations"], ["/quality", "Quality"], ["/account", "Account"],
  ];
  let me = null;

  class Problem extends Error {
    constructor(status, body, path) {
      super(`${status} ${body.detail || body.title || path}`);
      this.status = status; this.code = body.code; this.body = body;
    }
  }

  async function api(path, { method = "GET", json, body, headers = {}, raw = false } = {}) {
    const sent = { ...headers };
    if (json !== undefined) { sent["Content-Type"] = "application/json"; body = JSON.stringify(json); }
    if (method !== "GET" && me && me.csrf_token) sent["X-CSRF-Token"] = me.csrf_token;
    const response = await fetch(path, { method, body, headers: sent, credentials: "same-origin" });
    if (response.status === 401 && me) { toSignIn(); throw new Problem(401, {}, path); }
    if (!response.ok) throw new Problem(response.status, await response.json().catch(() => ({})), path);
    if (raw) return response;
    return response.status === 204 ? null : (response.headers.get("content-type") || "").includes("json") ? response.json() : response.text();
  }

  function toSignIn() {
    location.assign(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`);
  }

  function element(tag, attributes = {}, ...children) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") made.textContent = value;
      else if (name.startsWith("on")) made.addEventListener(name.slice(2), value);
      else if (value !== false && value !== null && value !== undefined) made.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) made.append(child);
    return made;
  }

  function header() {
    const links = [...PAGES];
    if (me.operator) links.push(["/dashboard", "Operations"]);
    const list = element("ul");
    for (const [href, label] of links) {
      const current = location.pathname === href ? { "aria-current": "page" } : {};
      list.append(element("li", {}, element("a", { href, ...current, text: label })));
    }
    const who = element("span", { class: "who", text: `${me.login || "tenant key"} · ${me.role} in ${me.tenant}` });
    const out = element("button", { class: "secondary", type: "button", text: "Sign out", onclick: signOut });
    const bar = element("header", { class: "console" },
      element("a", { class: "brand", href: "/segment", text: "maskline" }),
      element("nav", { "aria-label": "Console" }, list), who, out);
    document.body.prepend(bar);
  }

  async function signOut() {
    await api("/v1/sign-out", { method: "POST" }).catch(() => null);
    location.assign("/sign-in");
  }

  /** Who is signed in; draws the navigation. Resolves with /v1/me's answer (or leaves for /sign-in). */
  async function start() {
    const response = await fetch("/v1/me", { credentials: "same-origin" });
    if (response.status === 401) { toSignIn(); return new Promise(() => {}); }
    me = await response.json();
    header();
    return me;
  }

  /** A job's own event stream until it ends: resolves with its final view (GET /v1/jobs/{id});
   * `onProgress(view)` sees each view before that, the final one included. */
  function follow(id, onProgress = () => {}) {
    return new Promise((resolve, reject) => {
      const stream = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`);
      stream.addEventListener("progress", event => onProgress(JSON.parse(event.data)));
      for (const end of ["completed", "failed", "cancelled"]) {
        stream.addEventListener(end, event => {
          stream.close();
          const view = JSON.parse(event.data);
          onProgress(view);
          resolve(view);
        });
      }
      stream.onerror = () => { stream.close(); reject(new Error("the job's event stream broke off: reload to see its status")); };
    });
  }

  /** Rows into a table's body: `cells(row)` gives each row's cells (strings, numbers or elements). */
  function fill(tbody, rows, cells) {
    tbody.replaceChildren(...rows.map(row => element("tr", {}, ...cells(row).map(c => element("td", {}, c ?? "–")))));
  }

  const when = iso => (iso ? new Date(iso).toLocaleString() : "–");
  const size = bytes => (bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);
  const can = needed => ["viewer", "member", "owner"].indexOf(me.role) >= ["viewer", "member", "owner"].indexOf(needed);

  return { api, start, follow, element, fill, when, size, can, Problem, me: () => me };
})();
