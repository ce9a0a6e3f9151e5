"""EvoMerge: evolutionary merging of models of one architecture, suite scores as fitness."""
