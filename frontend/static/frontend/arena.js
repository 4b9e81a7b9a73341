// Arena battle page: vote by keyboard (a / b / t / x) or buttons through the REST API with the
// session cookie and CSRF header; the answer reveals the two models (textContent only). Then
// n or Enter goes to the next battle.
import { apiPost, describeError, installHelp } from "./common.js";

const app = document.getElementById("arena-app");
if (app) init(app);

function init(app) {
  const url = app.dataset.voteUrl;
  const started = Date.now();
  const notice = document.getElementById("notice");
  const reveal = document.getElementById("reveal");
  const revealText = document.getElementById("reveal-text");
  const nextForm = document.getElementById("next-form");
  const buttons = Array.from(app.querySelectorAll("button.vote"));
  const KEYS = { a: "a", b: "b", t: "tie", x: "both_bad" };
  const LABELS = { a: "A is better", b: "B is better", tie: "a tie", both_bad: "both are bad" };
  let state = "open"; // open -> sending -> voted

  function showNotice(text) {
    notice.textContent = text;
    notice.className = "notice error";
    notice.hidden = !text;
  }

  async function vote(choice) {
    if (state !== "open") return;
    state = "sending";
    showNotice("");
    buttons.forEach((b) => { b.disabled = true; b.classList.toggle("picked", b.dataset.choice === choice); });
    const result = await apiPost(url, { choice, time_spent_ms: Date.now() - started });
    if (!result.ok) {
      state = "open";
      buttons.forEach((b) => { b.disabled = false; b.classList.remove("picked"); });
      showNotice(describeError(result, "Your vote was not recorded; try again."));
      return;
    }
    state = "voted";
    const data = result.data;
    app.querySelector('[data-side="a"]').textContent = data.a_model;
    app.querySelector('[data-side="b"]').textContent = data.b_model;
    if (choice === "a" || choice === "b") document.getElementById(`side-${choice}`).classList.add("chosen");
    revealText.textContent = `You voted ${LABELS[data.choice] || data.choice}. A was ${data.a_model}; B was ${data.b_model}.`;
    reveal.hidden = false;
    document.getElementById("next-btn").focus();
  }

  buttons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.choice)));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest("input, textarea, select, [contenteditable]")) return;
    if (!document.getElementById("help-overlay").hidden) return;
    const key = e.key.toLowerCase();
    if (state === "open" && KEYS[key]) {
      e.preventDefault();
      vote(KEYS[key]);
    } else if (state === "voted" && (key === "n" || (key === "enter" && e.target === document.body))) {
      e.preventDefault();
      nextForm.requestSubmit();
    }
  });
  installHelp();
  app.dataset.ready = "1";  // tests wait for this before they press keys
}
