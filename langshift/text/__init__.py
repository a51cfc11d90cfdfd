"""Text utilities that both the data pipeline and the evaluations use (language identification),
kept apart so that neither of those packages depends on the other."""
