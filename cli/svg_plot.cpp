#include "svg_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "svg_text.hpp"

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

  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  // A small inset keeps points that fall exactly on the outermost ticks off the frame.
  constexpr double kInset = 12;
  auto px = [&](double x) {
    return kLeft + kInset + (std::log2(x) - x_lo) / (x_hi - x_lo) * (plot_w - 2 * kInset);
  };
  auto py = [&](double y) {
    return kTop + plot_h - kInset - (std::log10(y) - y_lo) / (y_hi - y_lo) * (plot_h - 2 * kInset);
  };

  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << " " << kHeight
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << svg_num(kWidth / 2)
      << "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">" << svg_escape(labels.title)
      << "</text>\n";

  // Grid and ticks. With many powers of two, label every other one to avoid overlap.
  const int x_step = (x_hi - x_lo) > 12 ? 2 : 1;
  svg << "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (int e = x_lo; e <= x_hi; ++e) {
    const double x = px(std::ldexp(1.0, e));
    svg << "<line x1=\"" << svg_num(x) << "\" y1=\"" << svg_num(kTop) << "\" x2=\"" << svg_num(x)
        << "\" y2=\"" << svg_num(kTop + plot_h) << "\"/>\n";
  }
  for (int e = y_lo; e <= y_hi; ++e) {
    const double y = py(std::pow(10.0, e));
    svg << "<line x1=\"" << svg_num(kLeft) << "\" y1=\"" << svg_num(y) << "\" x2=\""
        << svg_num(kLeft + plot_w) << "\" y2=\"" << svg_num(y) << "\"/>\n";
  }
  svg << "</g>\n";
  // Lighter minor grid at 2x and 5x within each decade, to read values between the labels.
  svg << "<g stroke=\"#f0f0f0\" stroke-width=\"1\">\n";
  for (int e = y_lo; e < y_hi; ++e) {
    for (double m : {2.0, 5.0}) {
      const double y = py(m * std::pow(10.0, e));
      svg << "<line x1=\"" << svg_num(kLeft) << "\" y1=\"" << svg_num(y) << "\" x2=\""
          << svg_num(kLeft + plot_w) << "\" y2=\"" << svg_num(y) << "\"/>\n";
    }
  }
  svg << "</g>\n";
  svg << "<g fill=\"#333333\">\n";
  for (int e = x_lo; e <= x_hi; ++e) {
    if ((e - x_lo) % x_step != 0) continue;
    svg << "<text x=\"" << svg_num(px(std::ldexp(1.0, e))) << "\" y=\""
        << svg_num(kTop + plot_h + 18) << "\" text-anchor=\"middle\">"
        << power_of_two_label(std::ldexp(1.0, e)) << "</text>\n";
  }
  for (int e = y_lo; e <= y_hi; ++e) {
    svg << "<text x=\"" << svg_num(kLeft - 8) << "\" y=\"" << svg_num(py(std::pow(10.0, e)) + 4)
        << "\" text-anchor=\"end\">" << power_of_ten_label(e) << "</text>\n";
  }
  svg << "</g>\n";

  // Axes and their labels.
  svg << "<rect x=\"" << svg_num(kLeft) << "\" y=\"" << svg_num(kTop) << "\" width=\""
      << svg_num(plot_w) << "\" height=\"" << svg_num(plot_h)
      << "\" fill=\"none\" stroke=\"#333333\"/>\n"
      << "<text x=\"" << svg_num(kLeft + plot_w / 2) << "\" y=\"" << svg_num(kHeight - 15)
      << "\" text-anchor=\"middle\">" << svg_escape(labels.x_label) << "</text>\n"
      << "<text x=\"20\" y=\"" << svg_num(kTop + plot_h / 2)
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 20 " << svg_num(kTop + plot_h / 2)
      << ")\">" << svg_escape(labels.y_label) << "</text>\n";

  // Series.
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
  }

  // Legend, top left inside the plot area.
  const double lx = kLeft + 12, ly = kTop + 12;
  if (!drawn.empty()) {
    svg << "<rect x=\"" << svg_num(lx - 6) << "\" y=\"" << svg_num(ly - 6)
        << "\" width=\"130\" height=\"" << svg_num(20.0 * drawn.size() + 6)
        << "\" fill=\"white\" stroke=\"#999999\"/>\n";
  }
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    const double y = ly + 20.0 * i + 8;
    svg << "<line x1=\"" << svg_num(lx) << "\" y1=\"" << svg_num(y) << "\" x2=\""
        << svg_num(lx + 24) << "\" y2=\"" << svg_num(y) << "\" stroke=\""
        << svg_escape(drawn[i].color) << "\" stroke-width=\"2\"/>\n"
        << "<text x=\"" << svg_num(lx + 32) << "\" y=\"" << svg_num(y + 4) << "\">"
        << svg_escape(drawn[i].name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lighthouse::cli
