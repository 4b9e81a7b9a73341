// The labelling page: autosave to localStorage, model drafts, ranking by keyboard and by drag and
// drop, and submit/skip/release through the REST API with the session cookie and CSRF header.
// Everything the server rendered is read from data-* attributes; no task text is ever written
// back into the page as HTML (only textContent and form values).
import { apiPost, describeError, installHelp } from "./common.js";

const app = document.getElementById("label-app");
if (app) init(app);

function init(app) {
  const kind = app.dataset.kind;
  const apiBase = app.dataset.apiBase;
  const storeKey = `labelwork:lease:${app.dataset.leaseId}`;
  const loadedAt = performance.now();
  const notice = document.getElementById("notice");
  const autosaveState = document.getElementById("autosave-state");
  const submitBtn = document.getElementById("submit-btn");
  const rationale = document.getElementById("rationale");

  const state = loadState() || {};
  // One key per piece of work, kept with it: a retry after a lost answer, a second click or a
  // reload re-sends the same key and the server stores the work once.
  if (!state.key) state.key = newKey();
  const elapsedBefore = state.elapsed || 0;
  let finished = false;
  let busy = false;

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function loadState() {
    try { return JSON.parse(localStorage.getItem(storeKey)); } catch { return null; }
  }
  function timeSpent() { return Math.round(elapsedBefore + performance.now() - loadedAt); }
  function save() {
    if (finished) return;
    state.elapsed = timeSpent();
    state.savedAt = new Date().toISOString();
    try {
      localStorage.setItem(storeKey, JSON.stringify(state));
      autosaveState.textContent = "Saved in this browser";
    } catch {
      autosaveState.textContent = "Could not save in this browser";
    }
  }
  function showNotice(text, level = "error") {
    notice.textContent = text;
    notice.className = `notice ${level}`;
    notice.hidden = false;
  }
  function clearNotice() { notice.hidden = true; notice.textContent = ""; }

  rationale.value = state.rationale || "";
  rationale.addEventListener("input", () => { state.rationale = rationale.value; save(); });

  const form = kind === "comparison" ? comparison(state, save, showNotice) : demonstration(state, save, showNotice);
  if (state.savedAt) autosaveState.textContent = "Restored your unsaved work";
  save();

  async function submit() {
    if (busy || finished) return;
    const body = form.payload();
    if (!body) return;
    Object.assign(body, {
      idempotency_key: state.key,
      rationale: rationale.value,
      time_spent_ms: timeSpent(),
      instruction_version: Number(app.dataset.instructionVersion) || null,
    });
    busy = true;
    submitBtn.disabled = true;
    clearNotice();
    save();
    const result = await apiPost(`${apiBase}submit/`, body);
    busy = false;
    submitBtn.disabled = false;
    if (result.ok) {
      done("Submitted. Loading your next task…");
    } else {
      showNotice(describeError(result, "Nothing was lost: your work is still here."));
    }
  }

  function done(message, target) {
    finished = true;
    localStorage.removeItem(storeKey);
    showNotice(message, "ok");
    if (target) window.location.assign(target);
    else document.getElementById("next-form").submit();  // POST: resume or lease the next task
  }

  async function closeLease(action, reason) {
    if (busy || finished) return;
    busy = true;
    const result = await apiPost(`${apiBase}${action}/`, { reason });
    busy = false;
    if (result.ok) done(action === "skip" ? "Skipped. Loading your next task…" : "Released.", action === "skip" ? null : "/");
    else showNotice(describeError(result, "The task is still yours."));
  }

  submitBtn.addEventListener("click", submit);
  document.getElementById("skip-btn").addEventListener("click", () => {
    const choice = document.getElementById("skip-reason").value;
    const detail = document.getElementById("skip-detail").value.trim();
    const reason = [choice, detail].filter(Boolean).join(": ");
    if (!reason) { showNotice("Say why you skip this task."); return; }
    closeLease("skip", reason);
  });
  // Releasing means "not now": it goes home rather than to another task.
  document.getElementById("release-btn").addEventListener("click", () => closeLease("release", ""));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
  });
  window.addEventListener("pagehide", save);

  countdown(new Date(app.dataset.expiresAt), app.dataset.leaseStatus, showNotice);
  installHelp();
  app.dataset.ready = "1";  // tests and scripts wait for this before they act
}

// --- demonstration --------------------------------------------------------------------------------
function demonstration(state, save, showNotice) {
  const textarea = document.getElementById("reply-text");
  const usedLabel = document.getElementById("used-drafts");
  const count = document.getElementById("char-count");
  const cards = Array.from(document.querySelectorAll(".draft"));
  state.text = state.text || "";
  state.draftIds = state.draftIds || [];
  textarea.value = state.text;

  function render() {
    count.textContent = `${textarea.value.length} characters`;
    const used = cards.filter((c) => state.draftIds.includes(Number(c.dataset.draftId)));
    cards.forEach((c) => {
      const isUsed = used.includes(c);
      c.classList.toggle("used", isUsed);
      c.querySelector(".used-mark").hidden = !isUsed;
    });
    usedLabel.textContent = used.length
      ? `Started from ${used.map((c) => c.querySelector(".letter").textContent).join(", ")}` : "";
  }
  function useDraft(card) {
    const content = card.dataset.content;
    // Insert at the caret (replacing a selection), so pieces of several drafts can be spliced.
    textarea.setRangeText(content, textarea.selectionStart, textarea.selectionEnd, "end");
    textarea.focus();
    const id = Number(card.dataset.draftId);
    if (!state.draftIds.includes(id)) state.draftIds.push(id);
    state.text = textarea.value;
    save();
    render();
  }
  cards.forEach((card) => card.querySelector(".use-draft").addEventListener("click", () => useDraft(card)));
  textarea.addEventListener("input", () => { state.text = textarea.value; save(); render(); });
  document.addEventListener("keydown", (e) => {
    if (e.altKey && !e.ctrlKey && /^Digit[1-9]$/.test(e.code)) {
      const card = cards[Number(e.code.slice(5)) - 1];
      if (card) { e.preventDefault(); useDraft(card); }
    }
  });
  render();

  return {
    payload() {
      if (!textarea.value.trim()) {
        showNotice("Write a reply before you submit.");
        textarea.focus();
        return null;
      }
      return { text: textarea.value, draft_ids: state.draftIds };
    },
  };
}

// --- comparison -----------------------------------------------------------------------------------
function comparison(state, save, showNotice) {
  const list = document.getElementById("reply-list");
  const summary = document.getElementById("ranking-summary");
  const cards = () => Array.from(list.querySelectorAll(".reply"));
  const idOf = (card) => Number(card.dataset.replyId);
  const k = cards().length;
  state.ranks = state.ranks || {};
  state.ratings = state.ratings || {};
  state.flags = state.flags || {};

  // Restore a drag-and-drop order.
  if (Array.isArray(state.order)) {
    const byId = new Map(cards().map((c) => [idOf(c), c]));
    state.order.forEach((id) => { if (byId.has(id)) list.appendChild(byId.get(id)); });
  }
  cards().forEach((card) => {
    const id = idOf(card);
    card.querySelectorAll("select[data-criterion]").forEach((sel) => {
      sel.value = String((state.ratings[id] || {})[sel.dataset.criterion] || "");
      sel.addEventListener("change", () => {
        const scores = state.ratings[id] || (state.ratings[id] = {});
        if (sel.value) scores[sel.dataset.criterion] = Number(sel.value);
        else delete scores[sel.dataset.criterion];
        save();
      });
    });
    card.querySelectorAll("input[data-flag]").forEach((box) => {
      box.checked = (state.flags[id] || []).includes(box.dataset.flag);
      box.addEventListener("change", () => {
        const flags = new Set(state.flags[id] || []);
        if (box.checked) flags.add(box.dataset.flag); else flags.delete(box.dataset.flag);
        state.flags[id] = Array.from(flags);
        save();
      });
    });
    card.querySelectorAll(".rank-btn").forEach((btn) => btn.addEventListener("click", () => {
      setRank(card, Number(btn.dataset.rank));
    }));
  });

  function setRank(card, n) {
    if (n) state.ranks[idOf(card)] = n; else delete state.ranks[idOf(card)];
    save();
    render();
  }

  // Tie-groups best first; rank numbers that nobody used collapse ([1, 1, 3] -> [[a, b], [c]]).
  function tieGroups() {
    const ids = cards().map(idOf);
    const numbers = [...new Set(ids.map((id) => state.ranks[id]).filter(Boolean))].sort((a, b) => a - b);
    return numbers.map((n) => ids.filter((id) => state.ranks[id] === n));
  }

  function render() {
    const letter = new Map(cards().map((c) => [idOf(c), c.dataset.letter]));
    const groups = tieGroups();
    cards().forEach((card) => {
      const n = state.ranks[idOf(card)];
      const badge = card.querySelector(".rank-badge");
      const place = groups.findIndex((g) => g.includes(idOf(card)));
      badge.textContent = n ? `#${place + 1}${groups[place].length > 1 ? " (tie)" : ""}` : "unranked";
      badge.dataset.empty = n ? "" : "1";
      card.classList.toggle("ranked", Boolean(n));
      card.querySelectorAll(".rank-btn").forEach((b) => b.classList.toggle("on", Number(b.dataset.rank) === n));
    });
    const unranked = cards().filter((c) => !state.ranks[idOf(c)]).length;
    summary.textContent = groups.length
      ? `Ranking: ${groups.map((g) => g.map((id) => letter.get(id)).join(" = ")).join("  >  ")}`
        + (unranked ? `   (${unranked} still unranked)` : "")
      : "No reply ranked yet.";
  }

  // Keyboard: the focused card takes digits; j/k move between cards.
  list.addEventListener("keydown", (e) => {
    const card = e.target.closest(".reply");
    if (!card || e.target !== card || e.ctrlKey || e.metaKey || e.altKey) return;
    const all = cards();
    const i = all.indexOf(card);
    if (/^[0-9]$/.test(e.key) && Number(e.key) <= k) {
      e.preventDefault();
      setRank(card, Number(e.key));
    } else if (e.key === "Backspace" || e.key === "Delete") {
      e.preventDefault();
      setRank(card, 0);
    } else if (e.key === "j" || e.key === "ArrowDown" || e.key === "ArrowRight") {
      e.preventDefault();
      all[Math.min(i + 1, all.length - 1)].focus();
    } else if (e.key === "k" || e.key === "ArrowUp" || e.key === "ArrowLeft") {
      e.preventDefault();
      all[Math.max(i - 1, 0)].focus();
    }
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest && e.target.closest("input, textarea, select, .reply");
    if (!typing && (e.key === "j" || e.key === "k")) { e.preventDefault(); cards()[0].focus(); }
  });

  // Drag and drop: drop a reply on another to put it there; ranks follow the new order.
  let dragged = null;
  list.addEventListener("dragstart", (e) => {
    dragged = e.target.closest(".reply");
    if (!dragged) return;
    dragged.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", dragged.dataset.replyId);
  });
  list.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("dragging");
    list.querySelectorAll(".drop-target").forEach((c) => c.classList.remove("drop-target"));
    dragged = null;
  });
  list.addEventListener("dragover", (e) => {
    const over = e.target.closest(".reply");
    if (!dragged || !over || over === dragged) return;
    e.preventDefault();
    list.querySelectorAll(".drop-target").forEach((c) => c.classList.remove("drop-target"));
    over.classList.add("drop-target");
  });
  list.addEventListener("drop", (e) => {
    const over = e.target.closest(".reply");
    if (!dragged || !over || over === dragged) return;
    e.preventDefault();
    const all = cards();
    const from = all.indexOf(dragged);
    const to = all.indexOf(over);
    list.insertBefore(dragged, from < to ? over.nextSibling : over);
    cards().forEach((card, i) => { state.ranks[idOf(card)] = i + 1; });
    state.order = cards().map(idOf);
    save();
    render();
  });

  render();
  return {
    payload() {
      const missing = cards().filter((c) => !state.ranks[idOf(c)]);
      if (missing.length) {
        showNotice(`Give every reply a rank: ${missing.map((c) => c.dataset.letter).join(", ")} `
          + `still unranked (focus a reply and press 1–${k}, or drag them into order).`);
        missing[0].focus();
        return null;
      }
      const ratings = {};
      Object.entries(state.ratings).forEach(([id, scores]) => { if (Object.keys(scores).length) ratings[id] = scores; });
      const flags = {};
      Object.entries(state.flags).forEach(([id, values]) => { if (values.length) flags[id] = values; });
      return { ranking: tieGroups(), ratings, flags };
    },
  };
}

// --- lease countdown ------------------------------------------------------------------------------
function countdown(expiresAt, status, showNotice) {
  const el = document.getElementById("countdown");
  let warned = false;
  function tick() {
    const left = Math.floor((expiresAt - Date.now()) / 1000);
    if (left <= 0 || status === "expired") {
      el.textContent = "Time is up";
      el.className = "countdown expired";
      if (!warned) {
        warned = true;
        showNotice("Your time on this task has run out. You can still submit while nobody else has taken "
          + "it; your work stays saved in this browser either way.", "warn");
      }
      return;
    }
    const h = Math.floor(left / 3600);
    const m = Math.floor((left % 3600) / 60);
    const s = String(left % 60).padStart(2, "0");
    el.textContent = h ? `${h}:${String(m).padStart(2, "0")}:${s} left` : `${m}:${s} left`;
    el.className = left < 120 ? "countdown warn" : "countdown";
  }
  tick();
  setInterval(tick, 1000);
}
