"""Loaders that turn published benchmark files (read locally, never downloaded) into langshift
evaluation tasks: `tmmluplus` (TMMLU+ as a choice suite) on the readers of `tables`. Benchmarks
that one recipe alone reports live with it (native alignment's Arabic benchmarks and BeaverTails
prompts: `langshift/recipes/native_alignment/`)."""
