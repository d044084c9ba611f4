// Renders every dashboard chart: the spec is JSON data on the page (never executed), drawn by the vendored
// vega-embed as SVG with the expression interpreter (ast: true), so the CSP needs no 'unsafe-eval'.
(function () {
  "use strict";
  var charts = document.querySelectorAll("[data-chart]");
  var pending = charts.length;
  function done() {
    pending -= 1;
    if (pending <= 0) { document.body.dataset.chartsRendered = "1"; }
  }
  if (!pending) { document.body.dataset.chartsRendered = "1"; return; }
  charts.forEach(function (element) {
    var spec = JSON.parse(document.getElementById(element.dataset.chart).textContent);
    vegaEmbed(element, spec, { renderer: "svg", actions: false, ast: true, defaultStyle: false })
      .then(function () { element.dataset.rendered = "1"; done(); })
      .catch(function (error) { element.dataset.error = String(error); done(); });
  });
})();
