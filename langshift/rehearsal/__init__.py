"""Rehearsals of the experiments' published settings: every stage of an experiment's default
config on tiny random models of the same kind, local files and a fake OpenAI-compatible server
(`python -m langshift.rehearse`, docs/recipes.md "Rehearsals")."""
