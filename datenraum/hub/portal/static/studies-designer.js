// The form designer: a small editor over a FHIR Questionnaire's top-level items (text, type, choices,
// required, branching by enableWhen, a calculation as an SDC calculatedExpression in FHIRPath, order),
// with a live preview rendered by the vendored lforms. Saving posts the whole Questionnaire to the study
// API, which publishes it as the form's next version; the hub's error names a JSON path
// ("questionnaire.item[3]...."), and is shown next to that item. Items inside groups (as a REDCap import
// makes them) are kept as they are; the designer edits the top level.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("designer-data").textContent);
  const T = data.texts;
  const CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression";
  const TYPES = ["string", "text", "integer", "decimal", "boolean", "date", "dateTime", "time", "choice", "display", "group"];
  const OPERATORS = ["=", "!=", ">", ">=", "<", "<=", "exists"];
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const form = data.questionnaire || {
    resourceType: "Questionnaire", status: "active", url: data.url_base, title: "", item: [],
  };
  form.item = form.item || [];
  const list = document.getElementById("designer-items");
  const title = document.getElementById("designer-title");
  const url = document.getElementById("designer-url");
  const problem = document.getElementById("designer-error");
  const status = document.getElementById("designer-status");
  const previewProblem = document.getElementById("preview-error");

  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") node.textContent = value;
      else if (value !== false && value !== undefined) node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function labelled(id, text, control) {
    control.id = id;
    return element("div", { class: "designer-field" }, [element("label", { for: id, text: text }), control]);
  }

  function select(options, value) {
    const node = element("select");
    for (const [optionValue, label] of options) {
      node.append(element("option", { value: optionValue, text: label, selected: optionValue === value }));
    }
    return node;
  }

  // -- reading and writing an item's parts

  function calculation(item) {
    const found = (item.extension || []).find((e) => e.url === CALCULATED);
    return found && found.valueExpression ? found.valueExpression.expression || "" : "";
  }

  function setCalculation(item, expression) {
    item.extension = (item.extension || []).filter((e) => e.url !== CALCULATED);
    if (expression) {
      item.extension.push({ url: CALCULATED, valueExpression: { language: "text/fhirpath", expression: expression } });
      item.readOnly = true;
    } else {
      delete item.readOnly;
    }
    if (!item.extension.length) delete item.extension;
  }

  function choicesText(item) {
    return (item.answerOption || [])
      .map((o) => (o.valueCoding ? `${o.valueCoding.code}|${o.valueCoding.display || ""}` : String(Object.values(o)[0])))
      .join("\n");
  }

  function setChoices(item, text) {
    const options = text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const [code, ...label] = line.split("|");
      return { valueCoding: { code: code.trim(), display: (label.join("|") || code).trim() } };
    });
    if (options.length) item.answerOption = options;
    else delete item.answerOption;
  }

  function answerKey(question) {
    const kinds = { boolean: "answerBoolean", integer: "answerInteger", decimal: "answerDecimal", date: "answerDate",
      dateTime: "answerDateTime", choice: "answerCoding" };
    return kinds[question && question.type] || "answerString";
  }

  function answerValue(key, text) {
    if (key === "answerBoolean") return text.trim().toLowerCase() === "true" || text.trim().toLowerCase() === "ja";
    if (key === "answerInteger") return parseInt(text, 10);
    if (key === "answerDecimal") return parseFloat(text.replace(",", "."));
    if (key === "answerCoding") return { code: text.trim() };
    return text;
  }

  function condition(item) {
    const first = (item.enableWhen || [])[0];
    if (!first) return { question: "", operator: "=", value: "" };
    const key = Object.keys(first).find((name) => name.startsWith("answer"));
    const value = key ? first[key] : "";
    return { question: first.question, operator: first.operator, value: value && value.code !== undefined ? value.code : String(value) };
  }

  function setCondition(item, question, operator, text) {
    if (!question) {
      delete item.enableWhen;
      delete item.enableBehavior;
      return;
    }
    const target = form.item.find((other) => other.linkId === question);
    const key = operator === "exists" ? "answerBoolean" : answerKey(target);
    const value = operator === "exists" ? true : answerValue(key, text);
    item.enableWhen = [{ question: question, operator: operator, [key]: value }];
  }

  // -- the editor

  function card(item, index) {
    const id = `item-${index}`;
    const linkId = element("input", { value: item.linkId || "", maxlength: "255", required: true });
    const text = element("input", { value: item.text || "", maxlength: "2000" });
    const type = select(TYPES.map((name) => [name, T["type." + name] || name]), item.type);
    const required = element("input", { type: "checkbox", checked: !!item.required });
    const choices = element("textarea", { rows: "3", placeholder: "1|Ja\n0|Nein" });
    choices.value = choicesText(item);
    const when = condition(item);
    const others = form.item.filter((other) => other !== item && other.linkId).map((other) => [other.linkId, other.text || other.linkId]);
    const question = select([["", T.always], ...others], when.question);
    const operator = select(OPERATORS.map((name) => [name, name]), when.operator);
    const value = element("input", { value: when.value, maxlength: "200" });
    const calculated = element("input", { value: calculation(item), maxlength: "2000",
      placeholder: "%resource.repeat(item).where(linkId='weight').answer.value" });
    const error = element("p", { class: "error item-error", role: "alert", hidden: true });
    const up = element("button", { type: "button", class: "secondary small", text: T.up, "aria-label": `${T.up}: ${item.linkId}` });
    const down = element("button", { type: "button", class: "secondary small", text: T.down, "aria-label": `${T.down}: ${item.linkId}` });
    const remove = element("button", { type: "button", class: "secondary small", text: T.remove, "aria-label": `${T.remove}: ${item.linkId}` });
    const choiceField = labelled(`${id}-choices`, T.choices, choices);
    choiceField.hidden = item.type !== "choice";
    const nested = (item.item || []).length;

    linkId.addEventListener("change", () => { item.linkId = linkId.value.trim(); render(); });
    text.addEventListener("change", () => { item.text = text.value; preview(); });
    type.addEventListener("change", () => { item.type = type.value; choiceField.hidden = item.type !== "choice"; preview(); });
    required.addEventListener("change", () => { if (required.checked) item.required = true; else delete item.required; preview(); });
    choices.addEventListener("change", () => { setChoices(item, choices.value); preview(); });
    for (const control of [question, operator, value]) {
      control.addEventListener("change", () => { setCondition(item, question.value, operator.value, value.value); preview(); });
    }
    calculated.addEventListener("change", () => { setCalculation(item, calculated.value.trim()); preview(); });
    up.addEventListener("click", () => move(index, -1));
    down.addEventListener("click", () => move(index, 1));
    remove.addEventListener("click", () => { form.item.splice(index, 1); render(); });

    return element("li", { class: "criteria designer-item", "data-index": String(index), "data-link-id": item.linkId || "" }, [
      element("div", { class: "designer-row" }, [
        labelled(`${id}-link`, T.link_id, linkId), labelled(`${id}-text`, T.text, text), labelled(`${id}-type`, T.type, type),
        labelled(`${id}-required`, T.required, required),
      ]),
      choiceField,
      element("div", { class: "designer-row" }, [
        labelled(`${id}-when`, T.show_when, question), labelled(`${id}-operator`, T.operator, operator),
        labelled(`${id}-value`, T.value, value),
      ]),
      labelled(`${id}-calculation`, T.calculation, calculated),
      nested ? element("p", { class: "hint", text: `${T.nested} ${nested}` }) : "",
      element("div", { class: "designer-row" }, [up, down, remove]),
      error,
    ]);
  }

  function move(index, step) {
    const target = index + step;
    if (target < 0 || target >= form.item.length) return;
    [form.item[index], form.item[target]] = [form.item[target], form.item[index]];
    render();
  }

  function render() {
    list.replaceChildren(...form.item.map(card));
    preview();
  }

  // -- the preview

  // Rendered again only when the form changed: a control that loses focus fires "change" even when its
  // value was taken already, and a new rendering would wipe what the reader is trying out in the preview.
  let rendered = null;

  function preview() {
    const target = document.getElementById("preview");
    if (!window.LForms || !LForms.Util) return;
    const current = JSON.stringify(form);
    if (current === rendered) return;
    rendered = current;
    previewProblem.hidden = true;
    target.replaceChildren();
    try {
      const shown = LForms.Util.addFormToPage(JSON.parse(JSON.stringify(form)), "preview");
      if (shown && typeof shown.catch === "function") shown.catch(showPreviewProblem);
    } catch (failure) {
      showPreviewProblem(failure);
    }
  }

  function showPreviewProblem(failure) {
    previewProblem.textContent = `${T.preview_failed} ${failure && failure.message ? failure.message : failure}`;
    previewProblem.hidden = false;
  }

  // -- saving

  function clearProblems() {
    problem.hidden = true;
    status.hidden = true;
    for (const slot of list.querySelectorAll(".item-error")) slot.hidden = true;
  }

  function showProblem(message) {
    const where = /^questionnaire\.item\[(\d+)\]/.exec(message);
    const slot = where && list.querySelector(`li[data-index="${where[1]}"] .item-error`);
    if (slot) {
      const item = form.item[Number(where[1])];
      slot.textContent = `${item.linkId || ""}: ${message}`;
      slot.hidden = false;
      slot.closest("li").scrollIntoView({ block: "center" });
    } else {
      problem.textContent = message;
      problem.hidden = false;
    }
  }

  async function save() {
    clearProblems();
    form.title = title.value;
    form.url = url.value.trim();
    const button = document.getElementById("designer-save");
    button.disabled = true;
    try {
      const response = await fetch(`/api/v1/studies/${encodeURIComponent(data.code)}/forms`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ questionnaire: form }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        form.version = body.version;
        url.readOnly = true;
        status.textContent = T.saved.replace("{version}", body.version);
        status.hidden = false;
      } else {
        showProblem(body.error || `${response.status}`);
      }
    } finally {
      button.disabled = false;
    }
  }

  title.value = form.title || "";
  url.value = form.url || "";
  url.readOnly = !!data.questionnaire;
  title.addEventListener("change", () => { form.title = title.value; preview(); });
  url.addEventListener("change", () => { form.url = url.value.trim(); });
  document.getElementById("designer-add").addEventListener("click", () => {
    let number = form.item.length + 1;
    while (form.item.some((item) => item.linkId === `item${number}`)) number += 1;
    form.item.push({ linkId: `item${number}`, text: "", type: "string" });
    render();
    list.lastElementChild.querySelector("input").focus();
  });
  document.getElementById("designer-save").addEventListener("click", save);
  render();
})();
