#include "plot/svg_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "plot/svg_chart.hpp"
#include "plot/svg_text.hpp"

namespace lighthouse::cli {

namespace {

// Canvas and plot-area geometry, in SVG user units.
constexpr double kWidth = 760, kHeight = 480;
constexpr double kLeft = 80, kRight = 30, kTop = 50, kBottom = 60;

// 1024 -> "1K", 524288 -> "512K", 1048576 -> "1M"; smaller numbers as they are.
std::string power_of_two_label(double value) {
  const auto v = static_cast<long long>(std::llround(value));
  if (v >= (1LL << 30) && v % (1LL << 30) == 0) return std::to_string(v >> 30) + "G";
  if (v >= (1LL << 20) && v % (1LL << 20) == 0) return std::to_string(v >> 20) + "M";
  if (v >= (1LL << 10) && v % (1LL << 10) == 0) return std::to_string(v >> 10) + "K";
  return std::to_string(v);
}

std::string power_of_ten_label(int exponent) {
  if (exponent >= 0 && exponent <= 5)
    return std::to_string(static_cast<long long>(std::pow(10, exponent)));
  if (exponent < 0 && exponent >= -3) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.*f", -exponent, std::pow(10.0, exponent));
    return buf;
  }
  return "1e" + std::to_string(exponent);
}

}  // namespace

std::string log_log_chart_svg(const PlotLabels& labels, const std::vector<PlotSeries>& series) {
  // Keep only drawable points.
  std::vector<PlotSeries> drawn;
  for (const PlotSeries& s : series) {
    PlotSeries d{s.name, s.color, {}};
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y) && x > 0 && y > 0) d.points.emplace_back(x, y);
    }
    std::sort(d.points.begin(), d.points.end());
    if (!d.points.empty()) drawn.push_back(std::move(d));
  }

  // Axis ranges: whole powers of two (x) and ten (y) around the data, at least one step wide.
  double xmin = 1, xmax = 2, ymin = 1, ymax = 10;
  if (!drawn.empty()) {
    xmin = ymin = INFINITY;
    xmax = ymax = 0;
    for (const PlotSeries& s : drawn) {
      for (const auto& [x, y] : s.points) {
        xmin = std::min(xmin, x);
        xmax = std::max(xmax, x);
        ymin = std::min(ymin, y);
        ymax = std::max(ymax, y);
      }
    }
  }
  int x_lo = static_cast<int>(std::floor(std::log2(xmin)));
  int x_hi = static_cast<int>(std::ceil(std::log2(xmax)));
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  int y_lo = static_cast<int>(std::floor(std::log10(ymin)));
  int y_hi = static_cast<int>(std::ceil(std::log10(ymax)));
  if (y_hi <= y_lo) y_hi = y_lo + 1;

  const PlotArea area{kLeft, kTop, kWidth - kLeft - kRight, kHeight - kTop - kBottom};
  const double plot_w = area.width, plot_h = area.height;
  // A small inset keeps points that fall exactly on the outermost ticks off the frame.
  constexpr double kInset = 12;
  auto px = [&](double x) {
    return kLeft + kInset + (std::log2(x) - x_lo) / (x_hi - x_lo) * (plot_w - 2 * kInset);
  };
  auto py = [&](double y) {
    return kTop + plot_h - kInset - (std::log10(y) - y_lo) / (y_hi - y_lo) * (plot_h - 2 * kInset);
  };

  std::ostringstream svg;
  svg_begin(svg, kWidth, kHeight, 28, labels.title);

  // Grid and ticks. With many powers of two, label every other one to avoid overlap.
  const int x_step = (x_hi - x_lo) > 12 ? 2 : 1;
  svg << "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (int e = x_lo; e <= x_hi; ++e)
    svg << svg_vertical_line(area, px(std::ldexp(1.0, e))) << "/>\n";
  for (int e = y_lo; e <= y_hi; ++e)
    svg << svg_horizontal_line(area, py(std::pow(10.0, e))) << "/>\n";
  svg << "</g>\n";
  // Lighter minor grid at 2x and 5x within each decade, to read values between the labels.
  svg << "<g stroke=\"#f0f0f0\" stroke-width=\"1\">\n";
  for (int e = y_lo; e < y_hi; ++e) {
    for (double m : {2.0, 5.0})
      svg << svg_horizontal_line(area, py(m * std::pow(10.0, e))) << "/>\n";
  }
  svg << "</g>\n";
  svg << "<g fill=\"#333333\">\n";
  for (int e = x_lo; e <= x_hi; ++e) {
    if ((e - x_lo) % x_step != 0) continue;
    svg_x_tick_label(svg, area, px(std::ldexp(1.0, e)), power_of_two_label(std::ldexp(1.0, e)));
  }
  for (int e = y_lo; e <= y_hi; ++e) {
    svg_y_tick_label(svg, area, py(std::pow(10.0, e)), power_of_ten_label(e));
  }
  svg << "</g>\n";

  // Axes and their labels.
  svg_frame(svg, area, labels, kHeight - 15, 20);

  // Series.
  std::vector<LegendEntry> legend;
  for (const PlotSeries& s : drawn) {
    svg << "<g stroke=\"" << svg_escape(s.color) << "\" fill=\"" << svg_escape(s.color) << "\">\n";
    if (s.points.size() > 1) {
      svg << "<polyline fill=\"none\" stroke-width=\"2\" points=\"";
      for (const auto& [x, y] : s.points) svg << svg_num(px(x)) << "," << svg_num(py(y)) << " ";
      svg << "\"/>\n";
    }
    for (const auto& [x, y] : s.points) {
      svg << "<circle cx=\"" << svg_num(px(x)) << "\" cy=\"" << svg_num(py(y))
          << "\" r=\"3.5\"/>\n";
    }
    svg << "</g>\n";
    legend.push_back({s.name, s.color, ""});
  }

  // Legend, top left inside the plot area.
  svg_legend(svg, {kLeft + 12, kTop + 12, 130, 20.0, 8}, legend);
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lighthouse::cli
