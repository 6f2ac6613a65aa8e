"""Getting items in: webhook deliveries (verify, store, acknowledge) and pollers."""
