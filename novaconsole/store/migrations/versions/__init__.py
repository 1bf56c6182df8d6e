"""One revision of the store's schema per file, named after its revision id."""
