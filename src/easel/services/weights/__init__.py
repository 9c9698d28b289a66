"""Model weights: where they are, whether complete, how to fetch them, what serves each tier."""
