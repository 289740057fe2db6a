"""Moved to multimem.app, split (views, region, select, columns, cards, explain, compare, figures) and multimem.summary;
this module re-exports every name it had so that the old import path works for one release."""
# ruff: noqa: F401
from multimem.app.cards import GRID_CSS, PLACEHOLDER, Card, card_html, grid_html, score_class, thumbnail_uri
from multimem.app.columns import (CALIBRATED, COLUMNS, INJECTED, PER_PAGE, SCORE_FILTERS, SCORED_SUBSETS,
                                  SUBSET_LABELS, SUBSET_SHORT, colour_range, columns_for, has_injected, norm_factor,
                                  score_values, sorts_for)
from multimem.app.compare import (COMPARE_MODES, baseline_of, change_sentence, compare_join, compare_values,
                                  lineage_chain, relative_change, scaled, subset_changes)
from multimem.app.compare import compare_means as subset_means
from multimem.app.explain import (_STOP, _WORD, COLLAPSED, calibrated_row, caption_overlap, collapsed, explain,
                                  index_note, neighbour_agreement, ordinal, subset_percentiles, words)
from multimem.app.figures import default_ks, histogram, label_stats
from multimem.app.region import Region, points_in_polygon
from multimem.app.select import (filter_mask, page_of, position_in, scatter_sample, search_text, select,
                                 sort_rows)
from multimem.app.views import (_CONTROL, _MD_SPECIAL, BROWSE_KEYS, ECHO_LIMIT, NEIGHBOURS, PAGES, BrowseView,
                                Params, _all, _choice, _float, _int, _list_name, _one, browse_params, link,
                                order_params, parse_browse, parse_k, parse_page, parse_run_name, parse_sample_id,
                                plain, unscored_note)
from multimem.store.runs import RunError, check_name
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED
from multimem.summary import precision_at_k, roc_curve, shared_range

SORTS = sorts_for(None)
