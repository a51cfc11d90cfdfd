"""Loaders that turn published benchmark files (read locally, never downloaded) into langshift
evaluation tasks: `arabic` (ArabicMMLU, EXAMS, ACVA, AraTrust as choice suites) and
`beavertails` (safety prompts for the pairwise judge in `evaluation.safety_judge`)."""
