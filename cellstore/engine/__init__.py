"""The stage engine: finds a project's stages, decides what to build, runs and commits them.

It knows nothing of biology: any folder of sql/ + stages/ + schemas/ is a project.
"""
