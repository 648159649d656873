"""Near-duplicate detection that stays near-linear: exact keys, MinHash-LSH for fuzzy matches,
k-means buckets for embedding matches, and keep-first clustering of what they find."""
