// Forms with data-confirm ask before they submit (a cancelled maintenance window changes
// past availability figures). Without JavaScript the form submits directly.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
