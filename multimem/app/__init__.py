"""The dashboard's library (app.py and pages/ read it): cached loaders (cache), the view in the URL and the shared
widgets (ui), query parameters as typed views (views), Browse's rows (select), the score columns (columns), the
image grid (cards), why a pair scores as it does (explain), two runs side by side (compare), the numbers behind
figures (figures), the Overview's plotly figures (plots), the pictures sent before any chart (pictures), the
scatter's selection (region), the mitigation form (strategy_form), curation lists (curation) and the offline
report (report). Nothing here is imported by the library below it."""
