"""Why a metadata row lands in `images_rejected`: the `reason` column's vocabulary."""

BAD_METADATA = "bad_metadata"  # a field is empty or unparsable, or file names disagree
DUPLICATE_FIELD = "duplicate_field"  # (plate, well, site) already seen on an earlier row
MISSING_FILE = "missing_file"  # a channel's file does not exist
UNREADABLE_TIFF = "unreadable_tiff"  # not a TIFF tifffile can parse (or unreadable)
TRUNCATED_TIFF = "truncated_tiff"  # the header points past the end of the file
WRONG_SHAPE = "wrong_shape"  # not the expected height × width, or channels disagree
WRONG_DTYPE = "wrong_dtype"  # pixel type other than the expected one (uint16)

ALL_REASONS = (
    BAD_METADATA,
    DUPLICATE_FIELD,
    MISSING_FILE,
    UNREADABLE_TIFF,
    TRUNCATED_TIFF,
    WRONG_SHAPE,
    WRONG_DTYPE,
)
