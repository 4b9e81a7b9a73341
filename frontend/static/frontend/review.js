// The review page: keyboard shortcuts over a plain form. The form posts to the page itself, whose
// view calls the same review service as the REST API; this module only adds keys and checks that
// a rejection has a reason before it is sent. It never writes task text into the page.
import { installHelp } from "./common.js";

const form = document.getElementById("review-form");
if (form) init(form);

function init(form) {
  const reason = document.getElementById("reason");
  const fixBox = document.getElementById("fix-box");
  const fixText = document.getElementById("fix-text");
  let sending = false;

  function send(decision) {
    if (sending) return;
    const button = form.querySelector(`button[name=decision][value=${decision}]`);
    if (button) form.requestSubmit(button);
  }

  form.addEventListener("submit", (e) => {
    const decision = e.submitter ? e.submitter.value : "";
    if (decision === "reject" && !reason.value.trim()) {
      e.preventDefault();
      reason.setCustomValidity("Say why the work is rejected: the annotator will read it.");
      reason.reportValidity();
      reason.focus();
      return;
    }
    if (sending) { e.preventDefault(); return; }
    sending = true;  // one decision per page: a double press does not post twice
    for (const b of form.querySelectorAll("button[name=decision]")) b.disabled = true;
    // A disabled submitter is not sent, so carry the decision in a hidden field.
    const hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = "decision";
    hidden.value = decision;
    form.appendChild(hidden);
  });
  reason.addEventListener("input", () => reason.setCustomValidity(""));

  function openFix() {
    if (!fixBox) return;
    fixBox.open = true;
    fixText.focus();
  }

  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest && e.target.closest("input, textarea, select, [contenteditable]");
    const help = document.getElementById("help-overlay");
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      if (e.target === reason) { e.preventDefault(); send("reject"); }
      else if (e.target === fixText) { e.preventDefault(); send("fix"); }
      return;
    }
    if (typing) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || (help && !help.hidden)) return;
    if (e.key === "a") { e.preventDefault(); send("accept"); }
    else if (e.key === "r") { e.preventDefault(); reason.focus(); }
    else if (e.key === "f" && fixBox) { e.preventDefault(); openFix(); }
    else if (e.key === "s") { e.preventDefault(); window.location.assign(form.dataset.skipUrl); }
  });

  installHelp();
  form.dataset.ready = "1";  // tests wait for this before they press keys
}
