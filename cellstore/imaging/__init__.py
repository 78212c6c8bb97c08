"""Image analysis for the image stages: illumination, nuclei, crops, cell features.

Library only (nothing here imports the engine). Stages call the driver (`driver.py`), which
streams fields in plate order to worker tasks (`tasks.py`) over a `cellstore.parallel`
TaskPool; tasks read fields (`fieldio.py`, `fields.py`), correct illumination
(`illumination.py`), segment (`segmentation.py`), cut crops (`crops.py`) or measure cells
(`features.py`, `shape.py`, `texture.py`) and write Parquet parts (`parts.py`).
`crops.read_crops` turns rows of the crops table back into an (N, C, H, W) batch.
"""
