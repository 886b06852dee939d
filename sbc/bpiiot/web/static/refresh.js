// Pages without live widgets (incidents and chain): reload when the service reports a change
// that they show, at most once a second.
"use strict";
(function () {
  const kinds = (document.body.dataset.refreshOn || "").split(" ").filter(Boolean);
  if (!kinds.length) return;
  let pending = null;
  const es = new EventSource("/events");
  const reload = () => {
    if (pending) return;
    pending = setTimeout(() => { es.close(); location.reload(); }, 1000);
  };
  for (const kind of kinds) es.addEventListener(kind, reload);
  window.addEventListener("beforeunload", () => es.close());
})();
