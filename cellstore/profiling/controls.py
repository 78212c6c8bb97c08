"""The negative control of BBBC021: DMSO wells are the reference for normalisation and drift."""

CONTROL_COMPOUND = "DMSO"
