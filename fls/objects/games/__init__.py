"""One decoder per game: ``CATEGORIES`` (the categories it reports, OCAtari's names) and ``detect(ram)``, which
returns :class:`fls.objects.GameObject` boxes from the 128 RAM bytes (as ``int64``, so arithmetic cannot wrap)."""
