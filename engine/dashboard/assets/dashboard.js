// Postino dashboard: the only script (CSP script-src 'self'; no inline script anywhere).
// Progressive: every page works without it. It loads a chosen CSV file into the
// import form's text area, so an import needs no multipart parser on the server.
document.addEventListener('change', (ev) => {
  const input = ev.target;
  if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !input.dataset.fills) return;
  const target = input.form && input.form.elements.namedItem(input.dataset.fills);
  const file = input.files && input.files[0];
  if (!(target instanceof HTMLTextAreaElement) || !file) return;
  file.text().then((text) => { target.value = text; });
});
