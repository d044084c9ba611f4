// The feasibility query builder: criteria search, inclusion and exclusion groups with their filters, and
// the live per-site results. The query is kept as the structured query (CCDL) the national portal writes,
// so that what is built, saved, exported and imported here is the same document everywhere.
"use strict";

(function () {
  const root = document.getElementById("builder");
  const T = JSON.parse(document.getElementById("texts").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const lang = root.dataset.lang;
  const SCHEMA = "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema";
  const COMPARATORS = ["gt", "ge", "lt", "le", "eq", "between"];

  // Inclusion: every group must hold, a group holds when one of its criteria does (AND of ORs).
  // Exclusion: a patient is excluded when all criteria of one group hold (OR of ANDs).
  const state = { inclusion: [], exclusion: [] };
  let savedId = root.dataset.savedId ? Number(root.dataset.savedId) : null;
  let events = null;
  let nextId = 1;

  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else if (name === "text") element.textContent = value;
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) element.append(child);
    }
    return element;
  }

  function text(key, values) {
    let result = T[key] || key;
    for (const [name, value] of Object.entries(values || {})) result = result.replace(`{${name}}`, value);
    return result;
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (response.status === 401) {
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
      throw new Error(text("builder.signed_out"));
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
    return data;
  }

  function say(message) {
    document.getElementById("builder-message").textContent = message;
  }

  function fail(message) {
    const box = document.getElementById("builder-error");
    box.textContent = message;
    box.hidden = !message;
  }

  // --- criteria search -------------------------------------------------------------------------

  // A medication is asked for as administered, prescribed or taken (three contexts): say which.
  function kindLabel(concept) {
    return concept.kind === "medication" ? concept.contextDisplay : text(`kind.${concept.kind}`);
  }

  function searchBox(label, onPick) {
    const id = `search-${nextId++}`;
    const input = h("input", {
      id,
      type: "search",
      role: "combobox",
      autocomplete: "off",
      "aria-autocomplete": "list",
      "aria-expanded": "false",
      "aria-controls": `${id}-list`,
      placeholder: text("builder.search_placeholder"),
    });
    const list = h("ul", { id: `${id}-list`, role: "listbox", class: "suggestions", hidden: true });
    const status = h("span", { class: "visually-hidden", role: "status", "aria-live": "polite" });
    let found = [];
    let active = -1;
    let timer = null;
    let asked = 0;

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(index) {
      active = index;
      [...list.children].forEach((item, i) => item.setAttribute("aria-selected", String(i === index)));
      if (index >= 0 && list.children[index]) {
        input.setAttribute("aria-activedescendant", list.children[index].id);
        list.children[index].scrollIntoView({ block: "nearest" });
      }
    }

    function pick(index) {
      const concept = found[index];
      if (!concept) return;
      close();
      input.value = "";
      onPick(concept);
    }

    async function search() {
      const query = input.value.trim();
      const mine = ++asked;
      if (!query) {
        close();
        return;
      }
      let data;
      try {
        data = await api("GET", `/api/v1/concepts?q=${encodeURIComponent(query)}&lang=${lang}&limit=20`);
      } catch (error) {
        fail(error.message);
        return;
      }
      if (mine !== asked) return; // an older answer arriving after a newer one
      found = data.concepts;
      list.replaceChildren(
        ...found.map((concept, i) =>
          h(
            "li",
            {
              id: `${id}-option-${i}`,
              role: "option",
              "aria-selected": "false",
              onmousedown: (event) => {
                event.preventDefault();
                pick(i);
              },
            },
            h("span", { class: "concept-display", text: concept.display }),
            h("span", { class: "concept-code", text: `${concept.systemLabel} ${concept.termCode.code}` }),
            h("span", { class: `badge kind-${concept.kind}`, text: kindLabel(concept) }),
          ),
        ),
      );
      if (!found.length) list.append(h("li", { class: "empty", text: text("builder.no_match") }));
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      status.textContent = text("builder.n_found", { n: found.length });
      highlight(found.length ? 0 : -1);
    }

    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(search, 120);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" && found.length) {
        event.preventDefault();
        if (list.hidden) search();
        else highlight(Math.min(active + 1, found.length - 1));
      } else if (event.key === "ArrowUp" && found.length) {
        event.preventDefault();
        highlight(Math.max(active - 1, 0));
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (!list.hidden && active >= 0) pick(active);
      } else if (event.key === "Escape") {
        close();
      }
    });
    // Closed a moment after the focus leaves (so that a click on a suggestion still counts), unless the
    // focus comes back first: a pick moves the focus to the new criterion and a quick next search returns
    // here, and the old close must not hide the new suggestions.
    let closing = null;
    input.addEventListener("blur", () => {
      closing = setTimeout(close, 150);
    });
    input.addEventListener("focus", () => clearTimeout(closing));
    return h("div", { class: "search" }, h("label", { for: id, text: label }), input, list, status);
  }

  // --- criteria and their filters --------------------------------------------------------------

  function newCriterion(concept) {
    const criterion = { id: nextId++, concept, filter: {}, time: {}, attributes: {} };
    const value = concept.valueFilter;
    if (value && value.type === "concept" && value.concepts.length === 1) {
      criterion.filter.concepts = [value.concepts[0].code];
    }
    if (value && (value.type === "quantity" || value.type === "age")) {
      criterion.filter.comparator = value.type === "age" ? "gt" : "";
      criterion.filter.unit = value.defaultUnit || (value.units[0] && value.units[0].code) || "";
    }
    return criterion;
  }

  function addCriterion(list, groupIndex, concept) {
    const criterion = newCriterion(concept);
    if (groupIndex === null) state[list].push([criterion]);
    else state[list][groupIndex].push(criterion);
    render();
    const card = document.querySelector(`[data-criterion="${criterion.id}"]`);
    if (card) (card.querySelector("select, input") || card).focus();
  }

  function removeCriterion(list, groupIndex, criterionIndex) {
    state[list][groupIndex].splice(criterionIndex, 1);
    if (!state[list][groupIndex].length) state[list].splice(groupIndex, 1);
    render();
    document.getElementById(`${list}-groups`).closest("section").querySelector("input").focus();
  }

  function valueControls(criterion) {
    const value = criterion.concept.valueFilter;
    if (!value) return null;
    const filter = criterion.filter;
    const id = `value-${criterion.id}`;
    if (value.type === "concept") {
      return h(
        "fieldset",
        { class: "value concept-values" },
        h("legend", { text: text("builder.value_is") }),
        value.concepts.map((option) =>
          h(
            "label",
            { class: "check" },
            h("input", {
              type: "checkbox",
              checked: (filter.concepts || []).includes(option.code),
              onchange: (event) => {
                const chosen = new Set(filter.concepts || []);
                if (event.target.checked) chosen.add(option.code);
                else chosen.delete(option.code);
                filter.concepts = [...chosen];
              },
            }),
            option.display,
          ),
        ),
      );
    }
    const comparator = h(
      "select",
      {
        id: `${id}-comparator`,
        "aria-label": text("builder.comparator"),
        onchange: (event) => {
          filter.comparator = event.target.value;
          render();
          document.getElementById(`${id}-comparator`).focus();
        },
      },
      value.type === "quantity" ? h("option", { value: "", text: text("builder.any_value") }) : null,
      COMPARATORS.map((c) => h("option", { value: c, selected: filter.comparator === c, text: text(`comparator.${c}`) })),
    );
    const number = (key, label) =>
      h("input", {
        type: "number",
        step: "any",
        inputmode: "decimal",
        "aria-label": label,
        value: filter[key] ?? "",
        oninput: (event) => (filter[key] = event.target.value),
      });
    const unit = h(
      "select",
      { "aria-label": text("builder.unit"), onchange: (event) => (filter.unit = event.target.value) },
      value.units.map((u) => h("option", { value: u.code, selected: filter.unit === u.code, text: u.display || u.code })),
    );
    const parts = [comparator];
    if (filter.comparator === "between") {
      parts.push(number("min", text("builder.min")), h("span", { text: text("builder.and") }), number("max", text("builder.max")));
    } else if (filter.comparator) {
      parts.push(number("value", text("builder.value")));
    }
    if (filter.comparator) parts.push(unit);
    return h("div", { class: "value quantity-value", role: "group", "aria-label": text("builder.value_filter") }, parts);
  }

  function timeControls(criterion) {
    if (!criterion.concept.timeRestriction) return null;
    const date = (key, label) =>
      h(
        "label",
        {},
        label,
        h("input", { type: "date", value: criterion.time[key] || "", onchange: (event) => (criterion.time[key] = event.target.value) }),
      );
    return h(
      "fieldset",
      { class: "time" },
      h("legend", { text: text("builder.time") }),
      date("after", text("builder.after")),
      date("before", text("builder.before")),
    );
  }

  function attributeControls(criterion) {
    const attributes = criterion.concept.attributes || [];
    if (!attributes.length) return null;
    const chosenCount = Object.values(criterion.attributes).reduce((n, codes) => n + codes.length, 0);
    return h(
      "details",
      { class: "attributes", open: chosenCount > 0 },
      h("summary", { text: text("builder.more_filters") + (chosenCount ? ` (${chosenCount})` : "") }),
      attributes.map((attribute) =>
        h(
          "fieldset",
          {},
          h("legend", { text: attribute.display }),
          attribute.values.map((option) =>
            h(
              "label",
              { class: "check" },
              h("input", {
                type: "checkbox",
                checked: (criterion.attributes[attribute.code.code] || []).includes(option.code),
                onchange: (event) => {
                  const chosen = new Set(criterion.attributes[attribute.code.code] || []);
                  if (event.target.checked) chosen.add(option.code);
                  else chosen.delete(option.code);
                  criterion.attributes[attribute.code.code] = [...chosen];
                },
              }),
              option.display,
            ),
          ),
        ),
      ),
    );
  }

  function criterionCard(list, groupIndex, criterion, criterionIndex) {
    const concept = criterion.concept;
    return h(
      "article",
      { class: "criterion", "data-criterion": criterion.id, tabindex: "-1", "aria-label": concept.display },
      h(
        "header",
        {},
        h("span", { class: `badge kind-${concept.kind}`, text: kindLabel(concept) }),
        h("strong", { class: "concept-display", text: concept.display }),
        h("span", { class: "concept-code", text: `${concept.systemLabel} ${concept.termCode.code}` }),
        h("button", {
          type: "button",
          class: "link remove",
          "aria-label": text("builder.remove", { name: concept.display }),
          text: "×",
          onclick: () => removeCriterion(list, groupIndex, criterionIndex),
        }),
      ),
      valueControls(criterion),
      timeControls(criterion),
      attributeControls(criterion),
    );
  }

  // A group offers its own search only when asked, so that the page stays short.
  function groupAdder(list, groupIndex) {
    const label = list === "inclusion" ? text("builder.add_or") : text("builder.add_and");
    const button = h("button", {
      type: "button",
      class: "secondary small add-to-group",
      text: `+ ${label}`,
      onclick: () => {
        const box = searchBox(label, (concept) => addCriterion(list, groupIndex, concept));
        button.replaceWith(box);
        box.querySelector("input").focus();
      },
    });
    return button;
  }

  function render() {
    for (const list of ["inclusion", "exclusion"]) {
      const inner = list === "inclusion" ? text("builder.or") : text("builder.and");
      const outer = list === "inclusion" ? text("builder.and") : text("builder.or");
      const container = document.getElementById(`${list}-groups`);
      container.replaceChildren(
        ...state[list].flatMap((group, groupIndex) => [
          groupIndex > 0 ? h("p", { class: "joiner outer", text: outer }) : null,
          h(
            "div",
            { class: "group", role: "group", "aria-label": text("builder.group", { n: groupIndex + 1 }) },
            group.flatMap((criterion, criterionIndex) => [
              criterionIndex > 0 ? h("p", { class: "joiner inner", text: inner }) : null,
              criterionCard(list, groupIndex, criterion, criterionIndex),
            ]),
            groupAdder(list, groupIndex),
          ),
        ]).filter(Boolean),
      );
    }
  }

  // --- between the builder and the structured query --------------------------------------------

  function criterionJson(criterion, path) {
    const concept = criterion.concept;
    const body = { context: concept.context, termCodes: [concept.termCode] };
    const value = concept.valueFilter;
    const filter = criterion.filter;
    if (value && value.type === "concept") {
      const chosen = value.concepts.filter((option) => (filter.concepts || []).includes(option.code));
      if (!chosen.length) throw new Error(text("builder.pick_value", { name: concept.display }));
      body.valueFilter = { type: "concept", selectedConcepts: chosen };
    } else if (value && filter.comparator) {
      const unit = value.units.find((u) => u.code === filter.unit);
      const unitJson = unit ? { code: unit.code, display: unit.display || unit.code } : undefined;
      const number = (key) => {
        const parsed = Number(String(filter[key] ?? "").replace(",", "."));
        if (filter[key] === undefined || filter[key] === "" || !Number.isFinite(parsed)) {
          throw new Error(text("builder.need_number", { name: concept.display }));
        }
        return parsed;
      };
      body.valueFilter =
        filter.comparator === "between"
          ? { type: "quantity-range", minValue: number("min"), maxValue: number("max"), unit: unitJson }
          : { type: "quantity-comparator", comparator: filter.comparator, value: number("value"), unit: unitJson };
    }
    const attributeFilters = (concept.attributes || [])
      .map((attribute) => ({
        attribute,
        chosen: attribute.values.filter((option) => (criterion.attributes[attribute.code.code] || []).includes(option.code)),
      }))
      .filter((entry) => entry.chosen.length)
      .map((entry) => ({ attributeCode: entry.attribute.code, type: "concept", selectedConcepts: entry.chosen }));
    if (attributeFilters.length) body.attributeFilters = attributeFilters;
    if (criterion.time.after || criterion.time.before) {
      if (criterion.time.after && criterion.time.before && criterion.time.after > criterion.time.before) {
        throw new Error(text("builder.time_order", { name: concept.display }));
      }
      body.timeRestriction = {};
      if (criterion.time.after) body.timeRestriction.afterDate = criterion.time.after;
      if (criterion.time.before) body.timeRestriction.beforeDate = criterion.time.before;
    }
    return body;
  }

  function queryJson() {
    if (!state.inclusion.length) throw new Error(text("builder.need_inclusion"));
    const query = {
      version: SCHEMA,
      display: document.getElementById("query-name").value.trim(),
      inclusionCriteria: state.inclusion.map((group) => group.map((c) => criterionJson(c))),
    };
    if (state.exclusion.length) query.exclusionCriteria = state.exclusion.map((group) => group.map((c) => criterionJson(c)));
    return query;
  }

  function criterionFromJson(item, concept) {
    const criterion = newCriterion(concept);
    const value = item.valueFilter;
    if (value && value.type === "concept") criterion.filter.concepts = value.selectedConcepts.map((c) => c.code);
    if (value && value.type === "quantity-comparator") {
      Object.assign(criterion.filter, { comparator: value.comparator, value: String(value.value) });
    }
    if (value && value.type === "quantity-range") {
      Object.assign(criterion.filter, { comparator: "between", min: String(value.minValue), max: String(value.maxValue) });
    }
    if (value && value.unit) criterion.filter.unit = value.unit.code;
    for (const attributeFilter of item.attributeFilters || []) {
      if (attributeFilter.selectedConcepts) {
        criterion.attributes[attributeFilter.attributeCode.code] = attributeFilter.selectedConcepts.map((c) => c.code);
      }
    }
    if (item.timeRestriction) {
      criterion.time = { after: item.timeRestriction.afterDate || "", before: item.timeRestriction.beforeDate || "" };
    }
    return criterion;
  }

  async function loadQuery(query) {
    if (!query || typeof query !== "object" || !Array.isArray(query.inclusionCriteria)) {
      throw new Error(text("builder.not_a_query"));
    }
    const groups = (key) => (Array.isArray(query[key]) ? query[key] : []);
    const items = [...groups("inclusionCriteria"), ...groups("exclusionCriteria")].flat();
    const data = await api("POST", `/api/v1/concepts/resolve?lang=${lang}`, { criteria: items });
    let position = 0;
    const build = (key) => groups(key).map((group) => group.map((item) => criterionFromJson(item, data.concepts[position++])));
    state.inclusion = build("inclusionCriteria");
    state.exclusion = build("exclusionCriteria");
    document.getElementById("query-name").value = query.display || "";
    render();
  }

  // --- running and showing results ----------------------------------------------------------------

  function countText(answer) {
    if (!answer.count) return "–";
    if (answer.count.below_threshold) return text("builder.below_threshold");
    return String(answer.count.obfuscated);
  }

  // A hub with a linkage unit shows each site's linkage status and the distinct count beside the sum.
  const linkageOffered = document.getElementById("distinct-persons") !== null;

  function showDistinct(distinct, answers) {
    const box = document.getElementById("distinct-total");
    const explanation = document.getElementById("distinct-explanation");
    box.hidden = distinct === null;
    explanation.hidden = distinct === null || !distinct.explanation;
    if (distinct === null) return;
    const sites = distinct.sites.join(", ");
    if (distinct.state === "released" && distinct.below_threshold) {
      box.textContent = text("builder.distinct_below", { sites });
    } else if (distinct.state === "released") {
      const [lo, hi] = distinct.interval;
      box.textContent = text("builder.distinct", { n: distinct.value, lo, hi, sites });
    } else if (distinct.state === "waiting") {
      box.textContent = text("builder.distinct_waiting");
    } else {
      box.textContent = text("builder.distinct_failed", { reason: distinct.reason || "" });
    }
    box.dataset.state = distinct.state;
    // The hub's explanation, in the reader's language: why the sum is larger, and whom the count leaves out.
    const missing = answers.filter((a) => a.linkage !== "delivered").map((a) => a.site);
    explanation.textContent = distinct.explanation
      ? text("builder.distinct_explanation", { sites }) +
        (missing.length ? ` ${text("builder.distinct_missing", { sites: missing.join(", ") })}` : "")
      : "";
  }

  function linkageText(answer) {
    if (!answer.linkage) return "";
    return answer.linkage === "delivered" ? text("builder.delivered") : answer.linkage;
  }

  function showResult(result) {
    const section = document.getElementById("results");
    section.hidden = false;
    document.getElementById("site-results").replaceChildren(
      ...result.sites.map((answer) =>
        h(
          "tr",
          { "data-site": answer.site, "data-state": answer.state },
          h("td", { text: answer.site }),
          h("td", {}, h("span", { class: `badge state-${answer.state}`, text: text(`state.${answer.state}`) })),
          h("td", { class: "number", text: countText(answer) }),
          h("td", { text: answer.reason || "" }),
          ...(linkageOffered ? [h("td", { class: "linkage", text: linkageText(answer) })] : []),
        ),
      ),
    );
    showDistinct(result.distinct || null, result.sites);
    const answered = result.sites.filter((a) => a.state === "answered").length;
    const progress = text("builder.progress", { answered, total: result.sites.length });
    let total;
    if (result.total) {
      total = text(result.total.at_least ? "builder.total_at_least" : "builder.total", {
        n: result.total.value,
        sites: result.total.sites,
      });
    } else {
      total = text(result.state === "complete" ? "builder.no_total" : "builder.waiting");
    }
    const totalBox = document.getElementById("total");
    totalBox.textContent = `${total} · ${progress}`;
    totalBox.dataset.state = result.state;
  }

  function follow(queryId) {
    if (events) events.close();
    events = new EventSource(`/api/v1/queries/${encodeURIComponent(queryId)}/events`);
    events.onmessage = (message) => {
      const result = JSON.parse(message.data);
      showResult(result);
      if (result.state === "complete") {
        events.close();
        say(text("builder.complete"));
      }
    };
    events.onerror = () => {
      // The browser reconnects by itself (with the last version it saw); say so only if it cannot.
      if (events.readyState === EventSource.CLOSED) fail(text("builder.connection_lost"));
    };
  }

  async function run() {
    fail("");
    let query;
    try {
      query = queryJson();
    } catch (error) {
      fail(error.message);
      return;
    }
    const button = document.getElementById("run-query");
    button.disabled = true;
    say(text("builder.asking"));
    try {
      const body = { query };
      if (linkageOffered && document.getElementById("distinct-persons").checked) body.distinct_persons = true;
      const submitted = await api("POST", "/api/v1/queries", body);
      if (submitted.reused) say(text("builder.reused"));
      if (savedId !== null) await api("PATCH", `/api/v1/saved-queries/${savedId}`, { last_query_id: submitted.id });
      follow(submitted.id);
      document.getElementById("results").scrollIntoView({ block: "nearest" });
    } catch (error) {
      fail(error.message);
      say("");
    } finally {
      button.disabled = false;
    }
  }

  async function save() {
    fail("");
    const nameInput = document.getElementById("query-name");
    const name = nameInput.value.trim();
    if (!name) {
      fail(text("builder.need_name"));
      nameInput.focus();
      return;
    }
    try {
      const query = queryJson();
      const saved =
        savedId === null
          ? await api("POST", "/api/v1/saved-queries", { name, query })
          : await api("PATCH", `/api/v1/saved-queries/${savedId}`, { name, query });
      savedId = saved.id;
      window.history.replaceState(null, "", `/queries/saved/${saved.id}`);
      say(text("builder.saved", { name }));
    } catch (error) {
      fail(error.message);
    }
  }

  function exportQuery() {
    fail("");
    try {
      const query = queryJson();
      const blob = new Blob([JSON.stringify(query, null, 2)], { type: "application/json" });
      const link = h("a", { href: URL.createObjectURL(blob), download: `${query.display || "structured-query"}.json` });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (error) {
      fail(error.message);
    }
  }

  async function importQuery(event) {
    fail("");
    const file = event.target.files[0];
    if (!file) return;
    try {
      await loadQuery(JSON.parse(await file.text()));
      savedId = null;
      say(text("builder.imported", { name: file.name }));
    } catch (error) {
      fail(`${file.name}: ${error.message}`);
    }
    event.target.value = "";
  }

  // --- start ------------------------------------------------------------------------------------

  for (const slot of document.querySelectorAll(".add-criterion")) {
    const list = slot.dataset.list;
    slot.append(
      searchBox(list === "inclusion" ? text("builder.add_inclusion") : text("builder.add_exclusion"), (concept) =>
        addCriterion(list, null, concept),
      ),
    );
  }
  document.getElementById("run-query").addEventListener("click", run);
  document.getElementById("save-query").addEventListener("click", save);
  document.getElementById("export-query").addEventListener("click", exportQuery);
  document.getElementById("import-query").addEventListener("change", importQuery);
  document.getElementById("clear-query").addEventListener("click", () => {
    state.inclusion = [];
    state.exclusion = [];
    savedId = null;
    document.getElementById("query-name").value = "";
    window.history.replaceState(null, "", "/queries/new");
    render();
  });
  render();

  const params = new URLSearchParams(window.location.search);
  if (savedId !== null) {
    api("GET", `/api/v1/saved-queries/${savedId}`)
      .then((saved) => loadQuery(saved.query).then(() => (document.getElementById("query-name").value = saved.name)))
      .then(() => (params.get("run") ? run() : null))
      .catch((error) => fail(error.message));
  } else if (params.get("result")) {
    follow(params.get("result"));
  }
})();
