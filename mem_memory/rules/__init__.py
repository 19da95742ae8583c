"""The learning rules of DESIGN §6 as pure functions (no I/O, no clock): the engine feeds them
records from the store and writes what they return."""
