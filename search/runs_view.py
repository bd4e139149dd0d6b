"""What the printed MLflow link opens on: the study's comparison, stored as one of MLflow's own views.

MLflow 3.17's runs page keeps what it shows (columns, grouping, charts, expanded rows) in the
browser's localStorage, one entry per experiment and browser. The one way to hand it a view from
outside is its shared-view link: an experiment tag ``mlflow.sharedViewState.<key>`` holding a saved
view (``{"name", "createdAt", "state"}``, ``state`` the JSON of its search facets and UI state), opened
by ``#/experiments/<id>/runs?viewStateShareKey=<key>`` — what its own "Save view" / share link
writes. Its reader (``useSharedExperimentViewState``) keeps the search facets (``orderByKey`` ...) and
every UI field but ``runsExpanded``, ``runsPinned``, ``runsHidden``, ``runsVisibilityMap`` and
``autoRefreshEnabled`` (a parent run cannot be expanded from outside), and ignores the view when the
URL carries a search facet. So the view groups the trials by
the searched parameters instead (a group is expanded unless the view says otherwise): one row per
configuration with its mean over seeds, its trials beneath, and charts of the compared metrics against
step with the min–max band over seeds. The view is also listed by name in the page's "Saved views".
"""

from __future__ import annotations

import json
import time
from typing import Iterable, Mapping

VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow's EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX
VIEW_URL_PARAM = "viewStateShareKey"  # MLflow's EXPERIMENT_PAGE_VIEW_STATE_SHARE_URL_PARAM_KEY
VIEW_KEY = "ltgan-study"  # one view per study's experiment, rewritten in place
VIEW_TAG = VIEW_TAG_PREFIX + VIEW_KEY
# besides the study's own metric(s): overall fidelity, the minority figures the report compares, and the
# counts that say a trial's aggregates carry penalties (a class missing or dropped)
SHOWN_METRICS = ("fid", "kid_minority", "recall_minority", "minority_missing", "majority_missing", "classes_dropped")
CHART_SECTION = "ltgan-study"
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the runs table's column ids, as its grid names them
MAX_TAG_VALUE = 20000  # MLflow's MAX_EXPERIMENT_TAG_VAL_LENGTH


def column(kind: str, name: str) -> str:
    """The runs table's key of a column (MLflow's makeCanonicalSortKey): ``metrics.`fid```."""
    return f"{kind}.`{name}`"


def _line_chart(metric: str) -> dict:
    """A line chart of one metric against step (the fields of MLflow's RunsChartsLineCardConfig)."""
    return {"uuid": f"ltgan-{metric}", "type": "LINE", "metricSectionId": CHART_SECTION, "deleted": False,
            "isGenerated": False, "runsCountToCompare": 10, "metricKey": metric, "selectedMetricKeys": [metric],
            "lineSmoothness": 0, "xAxisScaleType": "linear", "scaleType": "linear", "xAxisKey": "step",
            "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
            "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True,
            "range": {"xMin": None, "xMax": None, "yMin": None, "yMax": None}}


def view_state(metrics: Iterable[str], modes: Iterable[str], searched: Iterable[str]) -> dict:
    """The runs page's state for a study: ``metrics`` (the study's) and their ``modes`` (min | max),
    ``searched`` the parameters whose values differ between configurations."""
    metrics, modes, searched = list(metrics), list(modes), [p for p in dict.fromkeys(searched) if p != "seed"]
    shown = list(dict.fromkeys([*metrics, *SHOWN_METRICS]))
    params = [column("params", name) for name in [*searched, "seed"]]
    metric_columns = [column("metrics", name) for name in shown]
    group_by = {"aggregateFunction": "average",
                "groupByKeys": [{"mode": "param", "groupByData": name} for name in searched]} if searched else None
    return {
        # search facets: best configuration of the first study metric first (the UI's fetch order)
        "orderByKey": column("metrics", metrics[0]), "orderByAsc": (modes or ["min"])[0] == "min",
        # UI state
        "selectedColumns": params + metric_columns,
        # the metrics next to the run names (a group's name already says its configuration:
        # "method: damage, imbalance: 100"), then the parameters (MLflow puts them off screen to the
        # right), the creation date and duration last; a run-name column wide enough for a group's name
        "columnOrder": [RUN_NAME_COLUMN, *metric_columns, *params, "runDateAndNestInfo", "duration"],
        "columnWidths": {RUN_NAME_COLUMN: 330},
        # a group opens unless told otherwise, but the one of runs outside every group (the study's parent
        # run, whose description and metrics carry the report's headline) opens only when told so
        "groupBy": group_by, "groupsExpanded": {",".join(f"param.{name}" for name in searched): True},
        "runsHiddenMode": "SHOW_ALL",  # every configuration in the charts, not the first ten
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        "compareRunSections": [{"uuid": CHART_SECTION, "name": "Study metrics", "display": True,
                                "isReordered": False}],
        "compareRunCharts": [_line_chart(name) for name in shown],
        # keep our section first: the UI sorts sections by name unless told they were reordered
        "isAccordionReordered": True,
        # the UI adds a chart for every other metric it finds (fid_class/<k> ...): the chart view opens
        # filtered to the compared ones (a regex; the search box shows it, clearing it shows them all)
        "chartsSearchFilter": "^(" + "|".join(name.replace("/", "\\/") for name in shown) + ")$",
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        "viewMaximized": False, "runListHidden": False,
    }


def view_tag_value(name: str, state: Mapping) -> str:
    """The saved-view envelope MLflow reads from the tag (``state`` may be plain JSON or deflated)."""
    now = int(time.time() * 1000)
    value = json.dumps({"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)})
    if len(value) > MAX_TAG_VALUE:
        raise ValueError(f"the study's runs view takes {len(value)} characters, over MLflow's {MAX_TAG_VALUE} for "
                         f"an experiment tag; fewer searched parameters or metrics fit")
    return value


def set_study_view(client, experiment_id: str, name: str, metrics: Iterable[str], modes: Iterable[str],
                   searched: Iterable[str]) -> None:
    client.set_experiment_tag(experiment_id, VIEW_TAG, view_tag_value(name, view_state(metrics, modes, searched)))


def view_from_store(client, experiment_id: str, parent) -> tuple[list[str], list[str], list[str]]:
    """(metrics, modes, searched parameters) of a study as its runs record them: the parent's ``metric`` and
    ``mode`` params, and the sampled parameters whose values differ between its trials. For stores
    written before the view existed."""
    def listed(value: str | None) -> list[str]:
        loaded = json.loads(value) if value else []
        return [loaded] if isinstance(loaded, str) else list(loaded)

    metrics = listed(parent.data.params.get("metric")) or ["fid"]
    modes = listed(parent.data.params.get("mode")) or ["min"]
    trials = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                max_results=10000)
    values: dict[str, set] = {}
    for run in trials:
        for key, value in json.loads(run.data.tags.get("sampled", "{}")).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return metrics, modes, [key for key, seen in values.items() if len(seen) > 1]
