"""Each method's config section with the reference's defaults, one module per method named as the method: ``SECTION``
(the section's name; the method's name when absent) and ``get()`` (the section as a dict). Plain data, so that
config files read them without importing JAX."""
