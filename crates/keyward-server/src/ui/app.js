// Keyward's console works without this file; it only adds conveniences: filters that apply
// when chosen, a confirm dialog in place of the confirmation page, and copy buttons.
"use strict";

document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

const dialog = document.getElementById("confirm");
if (dialog) {
  const form = dialog.querySelector("form");
  dialog.querySelector("button[value=cancel]").addEventListener("click", () => dialog.close());
  document.querySelectorAll("a[data-confirm]").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      // The page's own words, set as text: never parsed as markup.
      dialog.querySelector(".confirm-text").textContent = link.dataset.confirm;
      form.action = link.href;
      dialog.showModal();
    });
  });
}

document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch {
      // No clipboard (not a secure context): select it for a manual copy.
      window.getSelection().selectAllChildren(source);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
});
