"""Stage `align`: every modality on one 264 x 264 UTM grid per location (SPEC section 5).

- :mod:`.core`: pure: majority CRS, the reference grid, slicing or reprojection onto it, the
  NaN rule and nearest-pixel fill.
- :mod:`ssl4eo_build.derive` (with the registry): the cloud mask, S2RGB, NDVI and LULC.
- :mod:`.worker`: one location: raw files read and checked, layers aligned, modalities
  derived, the cube written.
- :mod:`.cube`: the aligned cube's file format.
- :mod:`.stage`: the wiring: workers on the executor, results into the manifest.
"""
