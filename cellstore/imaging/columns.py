"""Columns of the `images` table the image stages read (no imports: stages use it at load)."""

FIELD_COLUMNS = (
    "image_id",
    "plate",
    "well",
    "width",
    "height",
    "path_dapi",
    "path_tubulin",
    "path_actin",
)
