"""The daily backup of the memory store (asset, job, schedule)."""
