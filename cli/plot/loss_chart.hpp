// Loss curves as a self-contained SVG: linear axes (step, loss), one polyline per series (dashed
// ones with markers for evaluations), and dotted vertical lines for events such as the stage
// switch. Written by hand like svg_plot (which is log-log and fits latency, not losses).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "plot/svg_plot.hpp"

namespace lighthouse::cli {

struct LossSeries {
  PlotSeries series;
  bool dashed = false;  // evaluations: dashed line with dots
};

struct VerticalMarker {
  double x = 0;
  std::string label, color;
};

// Non-finite points are left out; series without points are left out of the legend. y_max, when
// given and above the lowest point, caps the y axis: the curves are clipped at the plot area (a
// run's first steps, far above the rest, otherwise squash every curve into a thin band).
std::string loss_chart_svg(const PlotLabels& labels, const std::vector<LossSeries>& series,
                           const std::vector<VerticalMarker>& markers,
                           std::optional<double> y_max = std::nullopt);

}  // namespace lighthouse::cli
