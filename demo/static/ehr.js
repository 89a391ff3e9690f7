// The demo EHR page: a CDS Client (CDS Hooks 2.0) and SMART launcher in one small page.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("ehr-config").textContent);
  const base = window.location.origin;
  const fhirBase = base + "/fhir";
  const SERVICES = { "patient-view": "hcc-second-line-patient-view", "order-select": "hcc-second-line-order-select",
                     "order-sign": "hcc-second-line-order-sign" };
  let patientId = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function status(text) { document.getElementById("status").textContent = text; }

  async function callHook(hook, extraContext) {
    const body = {
      hook, hookInstance: crypto.randomUUID(), fhirServer: fhirBase,
      context: { userId: config.practitioner || "Practitioner/demo-practitioner", patientId, ...extraContext },
    };
    status(`${hook}: calling ${SERVICES[hook]} …`);
    const started = performance.now();
    const response = await fetch(`${base}/cds-services/${SERVICES[hook]}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const json = await response.json().catch(() => null);
    const ms = Math.round(performance.now() - started);
    if (!response.ok) {
      const why = json && json.issue ? json.issue.map((i) => i.diagnostics).join("; ") : response.statusText;
      status(`${hook}: HTTP ${response.status} (${why})`);
      renderCards(hook, []);
      return;
    }
    const cards = (json && json.cards) || [];
    status(`${hook}: ${cards.length} card${cards.length === 1 ? "" : "s"} in ${ms} ms`);
    renderCards(hook, cards);
  }

  async function sendFeedback(hook, item, button) {
    const response = await fetch(`${base}/cds-services/${SERVICES[hook]}/feedback`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ feedback: [{ ...item, outcomeTimestamp: new Date().toISOString() }] }) });
    button.closest(".card").querySelector(".feedback-status").textContent =
      response.ok ? `feedback sent: ${item.outcome}` : `feedback failed: HTTP ${response.status}`;
  }

  async function launchSmart(link) {
    const parameters = { patient: patientId };
    if (link.appContext) parameters.appContext = link.appContext;
    const response = await fetch(`${fhirBase}/_services/smart/Launch`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ launchUrl: link.url, parameters }) });
    const json = await response.json();
    if (!response.ok) { status(`SMART launch failed: ${json.error}`); return; }
    const url = new URL(link.url, base);
    url.searchParams.set("iss", fhirBase);
    url.searchParams.set("launch", json.launch_id);
    document.getElementById("app-panel").hidden = false;
    document.getElementById("app-frame").src = url.toString();
  }

  function renderCard(hook, card) {
    const node = el("article", { class: `card ${card.indicator || "info"}`, "data-uuid": card.uuid || "" });
    node.append(el("div", { class: "indicator" }, card.indicator || "info"));
    node.append(el("h3", { class: "summary" }, card.summary || ""));
    if (card.detail) {
      const detail = el("div", { class: "detail" });
      detail.innerHTML = DOMPurify.sanitize(marked.parse(card.detail));
      node.append(detail);
    }
    if (card.source) {
      const label = card.source.url ? el("a", { href: card.source.url, target: "_blank", rel: "noopener" },
                                         card.source.label) : card.source.label;
      node.append(el("div", { class: "source" }, "Source: ", label));
    }
    const actions = el("div", { class: "actions" });
    for (const suggestion of card.suggestions || []) {
      const button = el("button", { type: "button", class: "suggestion" }, suggestion.label);
      button.addEventListener("click", () => sendFeedback(hook, { card: card.uuid, outcome: "accepted",
        acceptedSuggestions: [{ id: suggestion.uuid }] }, button));
      actions.append(button);
    }
    for (const link of card.links || []) {
      if (link.type === "smart") {
        const button = el("button", { type: "button", class: "smart-link" }, link.label);
        button.addEventListener("click", () => launchSmart(link));
        actions.append(button);
      } else {
        actions.append(el("a", { class: "link", href: link.url, target: "_blank", rel: "noopener" }, link.label));
      }
    }
    const reasons = card.overrideReasons || [];
    let reasonSelect = null;
    if (reasons.length) {
      reasonSelect = el("select", { class: "override-reason" }, el("option", { value: "" }, "reason …"));
      reasons.forEach((reason, index) => reasonSelect.append(el("option", { value: String(index) },
                                                                 reason.display || reason.code)));
      actions.append(reasonSelect);
    }
    const dismiss = el("button", { type: "button", class: "dismiss" }, "Dismiss");
    dismiss.addEventListener("click", () => {
      const item = { card: card.uuid, outcome: "overridden" };
      if (reasonSelect && reasonSelect.value !== "") item.overrideReason = { reason: reasons[+reasonSelect.value] };
      sendFeedback(hook, item, dismiss);
    });
    actions.append(dismiss);
    node.append(actions, el("div", { class: "feedback-status muted" }));
    return node;
  }

  function renderCards(hook, cards) {
    const container = document.getElementById("cards");
    container.replaceChildren();
    if (!cards.length) container.append(el("p", { class: "muted" }, `${hook}: no cards`));
    for (const card of cards) container.append(renderCard(hook, card));
  }

  function draftOrder() {
    const select = document.getElementById("order-drug");
    const option = select.selectedOptions[0];
    const dose = Number(document.getElementById("order-dose").value);
    return {
      resourceType: "MedicationRequest", id: "demo-draft-1", status: "draft", intent: "order",
      subject: { reference: `Patient/${patientId}` }, authoredOn: new Date().toISOString().slice(0, 10),
      medicationCodeableConcept: { coding: [{ system: config.rxnorm, code: option.value,
                                              display: option.dataset.name }], text: option.dataset.name },
      dosageInstruction: [{ text: `${dose} ${option.dataset.text}`, doseAndRate: [{ doseQuantity: {
        value: dose, unit: "mg", system: "http://unitsofmeasure.org", code: "mg" } }] }],
    };
  }

  function orderContext(withSelection) {
    const order = draftOrder();
    const context = { draftOrders: { resourceType: "Bundle", type: "collection", entry: [{ resource: order }] } };
    if (withSelection) context.selections = [`MedicationRequest/${order.id}`];
    return context;
  }

  for (const button of document.querySelectorAll("button.patient")) {
    button.addEventListener("click", () => {
      patientId = button.dataset.patient;
      document.querySelectorAll("button.patient").forEach((b) => b.classList.toggle("open", b === button));
      document.getElementById("patient-title").textContent = button.querySelector(".name").textContent;
      document.getElementById("order").hidden = false;
      document.getElementById("app-panel").hidden = true;
      callHook("patient-view", {});
    });
  }
  document.getElementById("order-drug").addEventListener("change", (event) => {
    const option = event.target.selectedOptions[0];
    document.getElementById("order-dose").value = option.dataset.dose;
    document.getElementById("order-unit").textContent = option.dataset.text;
  });
  document.getElementById("order-select").addEventListener("click", () => callHook("order-select", orderContext(true)));
  document.getElementById("order-sign").addEventListener("click", () => callHook("order-sign", orderContext(false)));
  window.demoEhr = { launchSmart };  // what a card's SMART link button calls (tests, console)
  document.getElementById("app-close").addEventListener("click", () => {
    document.getElementById("app-panel").hidden = true;
    document.getElementById("app-frame").src = "about:blank";
  });
})();
