// The form page: render the form version with lforms, and save what was entered as a FHIR R4
// QuestionnaireResponse. The server checks it again (branching, calculations, types) and may refuse it;
// its answer names each problem's item.
"use strict";
(function () {
  const questionnaire = JSON.parse(document.getElementById("questionnaire").textContent);
  const response = JSON.parse(document.getElementById("response").textContent);
  const container = document.getElementById("form");
  const options = { fhirVersion: "R4" };
  if (response) options.questionnaireResponse = response;
  if (container.dataset.readOnly === "true") options.readonlyMode = true;
  const rendered = LForms.Util.addFormToPage(questionnaire, container, options);
  rendered.then(() => { container.dataset.ready = "true"; });

  const controls = document.getElementById("save-controls");
  if (!controls) return;
  const result = document.getElementById("save-result");
  document.getElementById("save-button").addEventListener("click", async () => {
    const entered = LForms.Util.getFormFHIRData("QuestionnaireResponse", "R4", container);
    const reason = document.getElementById("save-reason");
    const body = {
      response: entered,
      status: document.getElementById("save-status").value,
      reason: reason ? reason.value : null,
    };
    result.textContent = "";
    result.className = "";
    const answer = await fetch(controls.dataset.path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": controls.dataset.csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const outcome = await answer.json();
    if (answer.ok) {
      window.location.reload();
      return;
    }
    result.className = "refused";
    const list = document.createElement("ul");
    for (const problem of outcome.problems || [{ link_id: "", message: outcome.detail }]) {
      const line = document.createElement("li");
      line.textContent = (problem.link_id ? problem.link_id + ": " : "") + problem.message;
      list.appendChild(line);
    }
    result.append(controls.dataset.refused, list);
  });
})();
