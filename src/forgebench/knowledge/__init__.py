"""Knowledge-graph intelligence suite: creativity bridges, personalization and graph repair,
each measured against known answers (ground truth from suite data or seeded generators)."""
