// Behaviour that used to be inline (onchange=, javascript: links), here so the CSP can forbid inline script.
document.addEventListener("change", (event) => {
  const select = event.target.closest("[data-navigate]");  // a <select> that loads the page for its value
  if (select) location.href = select.dataset.navigate + encodeURIComponent(select.value);
  const all = event.target.closest("[data-select-all]");  // a "select all" box ticks the form's row boxes
  if (all) all.form.querySelectorAll(`input[name="${all.dataset.selectAll}"]`).forEach((box) => { box.checked = all.checked; });
});
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-back]")) {  // "back" links: the previous page, when there is one
    event.preventDefault();
    history.back();
  }
});
document.addEventListener("input", (event) => {
  // a search box above a <select multiple>: hides the options whose name does not contain the text
  const box = event.target.closest("[data-filter]");
  if (!box) return;
  const select = document.getElementById(box.dataset.filter);
  const text = box.value.trim().toLowerCase();
  for (const option of select.options) option.hidden = !!text && !option.text.toLowerCase().includes(text) && !option.selected;
});
// an editor's message slot (err-DOM-FIELD, swapped in out of band) marks the control DOM-FIELD it describes
document.addEventListener("htmx:oobAfterSwap", (event) => {
  const slot = event.target;  // the swapped-in slot (detail.target is the one it replaced)
  const control = slot.id && slot.id.startsWith("err-") && document.getElementById(slot.id.slice(4));
  if (!control) return;
  control.setAttribute("aria-describedby", slot.id);
  control.setAttribute("aria-invalid", slot.textContent.trim() ? "true" : "false");
});
