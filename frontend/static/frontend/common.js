// Shared by the pages: JSON calls to our own API with the session cookie and CSRF header, error
// messages a person can act on, and the "?" keyboard help overlay.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

export async function apiPost(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  } catch {
    return { ok: false, network: true, status: 0, data: {} };
  }
  let data = {};
  try { data = await response.json(); } catch { /* not JSON: a proxy page or an empty body */ }
  return { ok: response.ok, status: response.status, data };
}

export async function apiGet(url) {
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    return { ok: response.ok, status: response.status, data: await response.json() };
  } catch {
    return { ok: false, network: true, status: 0, data: {} };
  }
}

// The server's own words where it gave some; otherwise what happened and that nothing is lost.
export function describeError(result, reassurance) {
  if (result.network) {
    return `Could not reach the server (connection lost?). ${reassurance} Try again when you are back online.`;
  }
  const data = result.data || {};
  if (result.status === 409 && data.error === "lease_expired") return data.detail;
  if (result.status === 503 && data.error === "database_unavailable") {
    return `The server cannot reach its database right now (503). ${reassurance} Try again in a few seconds.`;
  }
  if (typeof data.detail === "string") return `${data.detail} ${result.status >= 500 ? reassurance : ""}`.trim();
  const fields = Object.entries(data).filter(([key]) => key !== "error");
  if (result.status === 400 && fields.length) {
    return fields.map(([key, value]) => `${key}: ${flatten(value)}`).join(" · ");
  }
  if (result.status === 403) return "You are not allowed to do this (403). Were you logged out?";
  return `The server answered ${result.status}. ${reassurance}`;
}

function flatten(value) {
  if (Array.isArray(value)) return value.map(flatten).join(" ");
  if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${flatten(v)}`).join(" ");
  return String(value);
}

export function installHelp() {
  const overlay = document.getElementById("help-overlay");
  const button = document.getElementById("help-btn");
  if (!overlay) return;
  const toggle = (show) => { overlay.hidden = !(show ?? overlay.hidden); };
  if (button) button.addEventListener("click", () => toggle());
  overlay.addEventListener("click", (e) => { if (e.target === overlay) toggle(false); });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest && e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "?" && !typing) { e.preventDefault(); toggle(); }
    else if (e.key === "Escape" && !overlay.hidden) { e.preventDefault(); toggle(false); }
  });
}
