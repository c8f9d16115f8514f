"""Build static/data/americas-110m.geojson from world-atlas' Natural Earth TopoJSON.

Why a build step kept in the repository: the console's maps must work with no internet
and no tile server, so the country boundaries ship with the hub. Natural Earth data is
public domain; world-atlas (ISC) is the npm package that carries it as TopoJSON.

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    python -m hub.console.tools.build_boundaries package/countries-110m.json

Output: one Feature per country of the Americas with properties `iso_a2`, `name_en`,
`name_es` (from protocol.vocab) and `label` [lon, lat] (centroid of the largest ring,
used to draw flows between countries). Coordinates are rounded to 0.01 degree (~1 km),
plenty for a 1:110 million map and it keeps the file small.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

from protocol import vocab

OUT = Path(__file__).resolve().parent.parent / "static" / "data" / "americas-110m.geojson"

#: ISO 3166-1 numeric -> alpha-2 for the countries and territories of the Americas.
AMERICAS = {
    "840": "US", "124": "CA", "484": "MX", "320": "GT", "084": "BZ", "222": "SV", "340": "HN",
    "558": "NI", "188": "CR", "591": "PA", "192": "CU", "388": "JM", "332": "HT", "214": "DO",
    "044": "BS", "780": "TT", "630": "PR", "170": "CO", "862": "VE", "328": "GY", "740": "SR",
    "218": "EC", "604": "PE", "068": "BO", "076": "BR", "600": "PY", "152": "CL", "032": "AR",
    "858": "UY", "238": "FK",
}
PRECISION = 2


def _decode_arcs(topo: dict[str, Any]) -> list[list[tuple[float, float]]]:
    tr = topo.get("transform")
    arcs = []
    for arc in topo["arcs"]:
        pts: list[tuple[float, float]] = []
        x = y = 0
        for p in arc:
            if tr:
                x += p[0]
                y += p[1]
                pts.append((x * tr["scale"][0] + tr["translate"][0],
                            y * tr["scale"][1] + tr["translate"][1]))
            else:
                pts.append((p[0], p[1]))
        arcs.append(pts)
    return arcs


def _ring(indices: list[int], arcs: list[list[tuple[float, float]]]) -> list[list[float]]:
    out: list[tuple[float, float]] = []
    for i in indices:
        pts = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        out.extend(pts if not out else pts[1:])
    coords: list[list[float]] = []
    for x, y in out:
        c = [round(x, PRECISION), round(y, PRECISION)]
        if not coords or coords[-1] != c:
            coords.append(c)
    if coords and coords[0] != coords[-1]:
        coords.append(coords[0])
    return coords


def _area_centroid(ring: list[list[float]]) -> tuple[float, float, float]:
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        f = x0 * y1 - x1 * y0
        a += f
        cx += (x0 + x1) * f
        cy += (y0 + y1) * f
    if a == 0:
        return 0.0, ring[0][0], ring[0][1]
    return abs(a / 2), cx / (3 * a), cy / (3 * a)


def build(topo: dict[str, Any]) -> dict[str, Any]:
    arcs = _decode_arcs(topo)
    countries = vocab.countries()
    features = []
    for g in topo["objects"]["countries"]["geometries"]:
        cc = AMERICAS.get(str(g.get("id", "")))
        if cc is None:
            continue
        if g["type"] == "Polygon":
            polys = [[_ring(r, arcs) for r in g["arcs"]]]
        elif g["type"] == "MultiPolygon":
            polys = [[_ring(r, arcs) for r in poly] for poly in g["arcs"]]
        else:
            continue
        polys = [p for p in polys if p and len(p[0]) >= 4]
        best = max((_area_centroid(p[0]) for p in polys), key=lambda t: t[0])
        entry = countries.get(cc)
        features.append(
            {
                "type": "Feature",
                "id": cc,
                "properties": {
                    "iso_a2": cc,
                    "name_en": entry.label("en") if entry else cc,
                    "name_es": entry.label("es") if entry else cc,
                    "label": [round(best[1], 2), round(best[2], 2)],
                },
                "geometry": {"type": "MultiPolygon", "coordinates": polys},
            }
        )
    features.sort(key=lambda f: str(f["id"]))
    return {
        "type": "FeatureCollection",
        "source": "Natural Earth 1:110m admin-0 countries (public domain) via world-atlas 2.0.2",
        "features": features,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    topo = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    fc = build(topo)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fc, separators=(",", ":"), ensure_ascii=False) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(fc['features'])} countries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
