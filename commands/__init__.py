"""The /release command language: text in, typed intents out. Pure: no I/O imports."""
