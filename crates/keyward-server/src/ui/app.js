// Keyward's console works without this file; it only adds conveniences: filters that apply
// when chosen, a confirm dialog in place of the confirmation page, and copy buttons.
"use strict";

document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

// Choosing another organization or provider on the credential form reloads it with that
// provider's fields: what was typed goes along (never the key, which stays out of URLs).
const choose = document.getElementById("choose");
const credentialForm = document.getElementById("credential-form");
if (choose && credentialForm) {
  choose.addEventListener("submit", () => {
    credentialForm.querySelectorAll("input[name]").forEach((field) => {
      const skip = ["api_key", "org", "provider", "skip_format_check"];
      if (field.type === "hidden" || skip.includes(field.name) || !field.value) return;
      const carried = document.createElement("input");
      carried.type = "hidden";
      carried.name = field.name;
      carried.value = field.value;
      choose.appendChild(carried);
    });
  });
}

const dialog = document.getElementById("confirm");
if (dialog) {
  const form = dialog.querySelector("form");
  const defaults = {
    title: dialog.querySelector("h2").textContent,
    warning: dialog.querySelector(".confirm-warning").textContent,
    button: dialog.querySelector(".confirm-button").textContent,
  };
  dialog.querySelector("button[value=cancel]").addEventListener("click", () => dialog.close());
  // The page's own words, set as text: never parsed as markup.
  const ask = (source, action) => {
    dialog.querySelector("h2").textContent = source.dataset.confirmTitle || defaults.title;
    dialog.querySelector(".confirm-text").textContent = source.dataset.confirm;
    dialog.querySelector(".confirm-warning").textContent =
      source.dataset.confirmWarning || defaults.warning;
    dialog.querySelector(".confirm-button").textContent =
      source.dataset.confirmButton || defaults.button;
    form.action = action;
    dialog.showModal();
  };
  // A link to a confirmation page (which works without this file) asks here instead.
  document.querySelectorAll("a[data-confirm]").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      ask(link, link.href);
    });
  });
  // A form that acts at once asks first.
  document.querySelectorAll("form[data-confirm]").forEach((source) => {
    source.addEventListener("submit", (event) => {
      event.preventDefault();
      ask(source, source.action);
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
