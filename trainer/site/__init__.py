"""A new scanner at a site: the acceptance test (`trainer site-check`) on the site's own labelled subjects, run
through the bundle's bedside path, judged against criteria the bundle carries from its own cross-validation."""
