// Referral flows between countries: lines between country label points, width by count.
(function () {
  "use strict";
  var el = document.getElementById("flow-map");
  if (!el || !window.L) { return; }
  var map = L.map(el, { zoomSnap: 0.25 });
  map.attributionControl.setPrefix("Leaflet");
  map.attributionControl.addAttribution("Natural Earth");
  map.setView([8, -80], 3);
  var lang = document.documentElement.lang === "es" ? "es" : "en";
  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); });
  }
  var points = {}, names = {};
  get(el.dataset.boundaries).then(function (fc) {
    L.geoJSON(fc, {
      style: { color: "#7a8a99", weight: 1, fillColor: "#fbfaf5", fillOpacity: 1 },
      onEachFeature: function (f, layer) {
        points[f.properties.iso_a2] = f.properties.label;
        names[f.properties.iso_a2] = f.properties["name_" + lang];
        layer.bindTooltip(f.properties["name_" + lang]);
      }
    }).addTo(map);
    return get(el.dataset.flows);
  }).then(function (body) {
    var max = 1, drawn = 0;
    body.flows.forEach(function (f) { if (f.count > max) { max = f.count; } });
    body.flows.forEach(function (f) {
      var a = points[f.from], b = points[f.to];
      if (!a || !b) { return; }
      var label = (names[f.from] || f.from) + " \u2192 " + (names[f.to] || f.to) + ": " + f.count;
      if (f.from === f.to) {
        L.circleMarker([a[1], a[0]], { radius: 4 + 10 * f.count / max, color: "#2f6db3" })
          .bindTooltip(label).addTo(map);
      } else {
        // A slight curve so A->B and B->A do not overlap.
        var mx = (a[0] + b[0]) / 2 + (b[1] - a[1]) * 0.15, my = (a[1] + b[1]) / 2 - (b[0] - a[0]) * 0.15;
        L.polyline([[a[1], a[0]], [my, mx], [b[1], b[0]]],
          { color: "#c0392b", weight: 2 + 8 * f.count / max, opacity: 0.7 })
          .bindTooltip(label).addTo(map);
        L.circleMarker([b[1], b[0]], { radius: 4, color: "#c0392b", fillOpacity: 1 }).addTo(map);
      }
      drawn += 1;
    });
    el.dataset.drawn = String(drawn);
    el.classList.add("ready");
  }).catch(function (err) { el.dataset.error = String(err); el.classList.add("ready"); });
})();
