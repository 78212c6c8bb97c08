"""Profiling science: aggregation, normalisation (standardise, whitening, TVN), NSC/NSCB, mAP."""
