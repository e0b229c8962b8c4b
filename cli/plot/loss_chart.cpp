#include "plot/loss_chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "plot/svg_chart.hpp"
#include "plot/svg_text.hpp"

namespace lighthouse::cli {

namespace {

constexpr double kWidth = 900, kHeight = 520, kLeft = 70, kRight = 20, kTop = 45, kBottom = 50;

std::string label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `count` intervals.
double nice_step(double range, int count) {
  const double raw = range / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

}  // namespace

std::string loss_chart_svg(const PlotLabels& labels, const std::vector<LossSeries>& series,
                           const std::vector<VerticalMarker>& markers,
                           std::optional<double> y_max) {
  std::vector<LossSeries> drawn;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const LossSeries& s : series) {
    LossSeries d{{s.series.name, s.series.color, {}}, s.dashed};
    for (const auto& [x, y] : s.series.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      d.series.points.emplace_back(x, y);
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    std::sort(d.series.points.begin(), d.series.points.end());
    if (!d.series.points.empty()) drawn.push_back(std::move(d));
  }
  if (drawn.empty()) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  const bool capped = y_max && *y_max > ymin && *y_max < ymax;
  if (capped) ymax = *y_max;
  xmin = std::min(xmin, 0.0);
  if (xmax <= xmin) xmax = xmin + 1;
  if (ymax <= ymin) ymax = ymin + 1;
  const double xs = nice_step(xmax - xmin, 8), ys = nice_step(ymax - ymin, 6);
  const double x_lo = std::floor(xmin / xs) * xs, x_hi = std::ceil(xmax / xs) * xs;
  const double y_lo = std::floor(ymin / ys) * ys, y_hi = std::ceil(ymax / ys) * ys;
  const PlotArea area{kLeft, kTop, kWidth - kLeft - kRight, kHeight - kTop - kBottom};
  const double plot_w = area.width, plot_h = area.height;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) { return kTop + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h; };

  std::ostringstream svg;
  svg_begin(svg, kWidth, kHeight, 26, labels.title);
  svg << "<g stroke=\"#e0e0e0\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs)
    svg << svg_vertical_line(area, px(x)) << "/>\n";
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys)
    svg << svg_horizontal_line(area, py(y)) << "/>\n";
  svg << "</g>\n<g fill=\"#333333\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs) svg_x_tick_label(svg, area, px(x), label(x));
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys) svg_y_tick_label(svg, area, py(y), label(y));
  svg << "</g>\n";
  svg_frame(svg, area, labels, kHeight - 12, 18);
  for (std::size_t i = 0; i < markers.size(); ++i) {
    const VerticalMarker& m = markers[i];
    if (!std::isfinite(m.x) || m.x < x_lo || m.x > x_hi) continue;
    svg << svg_vertical_line(area, px(m.x)) << " stroke=\"" << svg_escape(m.color)
        << "\" stroke-dasharray=\"2 3\" stroke-width=\"1.5\"/>\n"
        << "<text x=\"" << svg_num(px(m.x) + 4) << "\" y=\""
        << svg_num(kTop + plot_h - 8 - 14.0 * static_cast<double>(i)) << "\" fill=\""
        << svg_escape(m.color) << "\">" << svg_escape(m.label) << "</text>\n";
  }
  if (capped) {
    svg << "<defs><clipPath id=\"plot-area\"><rect x=\"" << svg_num(area.left) << "\" y=\""
        << svg_num(area.top) << "\" width=\"" << svg_num(plot_w) << "\" height=\""
        << svg_num(plot_h) << "\"/></clipPath></defs>\n<g clip-path=\"url(#plot-area)\">\n";
  }
  std::vector<LegendEntry> legend;
  for (const LossSeries& s : drawn) {
    const std::string color = svg_escape(s.series.color);
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\""
        << (s.dashed ? "2\" stroke-dasharray=\"6 4" : "1.5") << "\" points=\"";
    for (const auto& [x, y] : s.series.points)
      svg << svg_num(px(x)) << "," << svg_num(py(y)) << " ";
    svg << "\"/>\n";
    if (s.dashed) {
      for (const auto& [x, y] : s.series.points) {
        svg << "<circle cx=\"" << svg_num(px(x)) << "\" cy=\"" << svg_num(py(y))
            << "\" r=\"3\" fill=\"" << color << "\"/>\n";
      }
    }
    legend.push_back({s.series.name, s.series.color, s.dashed ? " stroke-dasharray=\"6 4\"" : ""});
  }
  if (capped) svg << "</g>\n";
  svg_legend(svg, {kLeft + plot_w - 250, kTop + 10, 246, 18.0, 7}, legend);
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lighthouse::cli
