"""Stage `sample`: where the dataset's locations are (SPEC section 3).

- :mod:`.cities`: the top-10k cities table (read, checked, written).
- :mod:`.sampling`: v1's rule, pure: Gaussian draws around a city (sigma 50 km), accepted when
  no earlier location holds their 1-degree cell's neighbourhood (the overlap filter).
- :mod:`.reference_index`: the published v1.1 metadata parquet as locations with reference
  times and patch footprints (reproducing the published patches).
- :mod:`.stage`: the wiring: locations into the manifest, resumable, refusing changed plans.
"""
