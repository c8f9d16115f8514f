// Service map: Natural Earth boundaries + service markers, no tiles, no internet.
(function () {
  "use strict";
  var el = document.getElementById("service-map");
  if (!el || !window.L) { return; }
  L.Icon.Default.imagePath = "/console/static/vendor/leaflet/images/";
  var map = L.map(el, { zoomSnap: 0.25, attributionControl: true, worldCopyJump: false });
  map.attributionControl.setPrefix("Leaflet");
  map.attributionControl.addAttribution("Natural Earth");
  map.setView([8, -80], 3);
  var lang = document.documentElement.lang === "es" ? "es" : "en";
  function text(tag, value) {
    var node = document.createElement(tag);
    node.textContent = value;
    return node;
  }
  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); });
  }
  get(el.dataset.boundaries).then(function (fc) {
    L.geoJSON(fc, {
      style: { color: "#7a8a99", weight: 1, fillColor: "#fbfaf5", fillOpacity: 1 },
      onEachFeature: function (f, layer) { layer.bindTooltip(f.properties["name_" + lang]); }
    }).addTo(map);
    return get(el.dataset.services);
  }).then(function (fc) {
    var markers = [];
    fc.features.forEach(function (f) {
      var c = f.geometry.coordinates, p = f.properties;
      var box = document.createElement("div");
      box.appendChild(text("strong", p.service));
      box.appendChild(text("div", p.organization));
      if (p.location) { box.appendChild(text("div", p.location + " (" + p.country + ")")); }
      if (p.service_types.length) { box.appendChild(text("div", p.service_types.join(", "))); }
      if (p.hours.length) { box.appendChild(text("div", p.hours.join("; "))); }
      if (p.email) { box.appendChild(text("div", p.email)); }
      if (p.phones.length) { box.appendChild(text("div", p.phones.join(", "))); }
      var m = L.marker([c[1], c[0]], { title: p.service, alt: p.service }).bindPopup(box);
      m.addTo(map);
      markers.push(m);
    });
    el.dataset.markers = String(markers.length);
    if (markers.length) {
      map.fitBounds(L.featureGroup(markers).getBounds().pad(0.3), { maxZoom: 7 });
    }
    el.classList.add("ready");
  }).catch(function (err) {
    el.dataset.error = String(err);
    el.classList.add("ready");
  });
})();
