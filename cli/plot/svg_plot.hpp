// A log-log line chart as a self-contained SVG document, written by hand (no dependency):
// axes, ticks at powers of two on x and at powers of ten on y, grid, legend, labels.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lighthouse::cli {

struct PlotSeries {
  std::string name;
  std::string color;                              // any SVG colour, e.g. "#1f77b4"
  std::vector<std::pair<double, double>> points;  // (x, y), both > 0; sorted by x when drawn
};

struct PlotLabels {
  std::string title, x_label, y_label;
};

// Points with x <= 0 or y <= 0 (or not finite) are left out; series without points are left
// out of the legend too.
std::string log_log_chart_svg(const PlotLabels& labels, const std::vector<PlotSeries>& series);

}  // namespace lighthouse::cli
