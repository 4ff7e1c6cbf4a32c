"""Pictures of the results (PNG, headless): ranked-results grids, CMC curves, affinity heatmaps."""

from .affinity import plot_affinity
from .cmc import plot_cmc
from .evaluation_plots import plot_evaluation, plot_search_results, protocol_marks
from .ranked_grid import plot_ranked_results, ranked_grid_size

__all__ = ["plot_cmc", "plot_ranked_results", "ranked_grid_size", "plot_affinity", "plot_evaluation",
           "plot_search_results", "protocol_marks"]
