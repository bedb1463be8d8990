"""Stage `download`: scenes chosen and fetched per location (SPEC section 4).

- :mod:`.core`: pure scene choice (v1's date rule, the fixed-year rule, reference times; S-1
  closest in time), the layers each season needs (from the modality registry), and the
  per-location worker: one scene-plan request, then batched pixel requests cut to the
  server's limits, one raw GeoTIFF per request and type.
- :mod:`.stage`: the wiring: workers on the executor, results into the manifest, a damaged or
  missing file fetched again alone.
- The archives themselves are :mod:`ssl4eo_build.sources` (the simulator, Earth Engine).
"""
