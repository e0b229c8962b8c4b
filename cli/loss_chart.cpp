#include "loss_chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "svg_text.hpp"

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
                           const std::vector<VerticalMarker>& markers) {
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
  xmin = std::min(xmin, 0.0);
  if (xmax <= xmin) xmax = xmin + 1;
  if (ymax <= ymin) ymax = ymin + 1;
  const double xs = nice_step(xmax - xmin, 8), ys = nice_step(ymax - ymin, 6);
  const double x_lo = std::floor(xmin / xs) * xs, x_hi = std::ceil(xmax / xs) * xs;
  const double y_lo = std::floor(ymin / ys) * ys, y_hi = std::ceil(ymax / ys) * ys;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) { return kTop + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h; };

  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << " " << kHeight
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << svg_num(kWidth / 2)
      << "\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">" << svg_escape(labels.title)
      << "</text>\n<g stroke=\"#e0e0e0\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs) {
    svg << "<line x1=\"" << svg_num(px(x)) << "\" y1=\"" << svg_num(kTop) << "\" x2=\""
        << svg_num(px(x)) << "\" y2=\"" << svg_num(kTop + plot_h) << "\"/>\n";
  }
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys) {
    svg << "<line x1=\"" << svg_num(kLeft) << "\" y1=\"" << svg_num(py(y)) << "\" x2=\""
        << svg_num(kLeft + plot_w) << "\" y2=\"" << svg_num(py(y)) << "\"/>\n";
  }
  svg << "</g>\n<g fill=\"#333333\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs) {
    svg << "<text x=\"" << svg_num(px(x)) << "\" y=\"" << svg_num(kTop + plot_h + 18)
        << "\" text-anchor=\"middle\">" << label(x) << "</text>\n";
  }
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys) {
    svg << "<text x=\"" << svg_num(kLeft - 8) << "\" y=\"" << svg_num(py(y) + 4)
        << "\" text-anchor=\"end\">" << label(y) << "</text>\n";
  }
  svg << "</g>\n<rect x=\"" << svg_num(kLeft) << "\" y=\"" << svg_num(kTop) << "\" width=\""
      << svg_num(plot_w) << "\" height=\"" << svg_num(plot_h)
      << "\" fill=\"none\" stroke=\"#333333\"/>\n"
      << "<text x=\"" << svg_num(kLeft + plot_w / 2) << "\" y=\"" << svg_num(kHeight - 12)
      << "\" text-anchor=\"middle\">" << svg_escape(labels.x_label) << "</text>\n"
      << "<text x=\"18\" y=\"" << svg_num(kTop + plot_h / 2)
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " << svg_num(kTop + plot_h / 2)
      << ")\">" << svg_escape(labels.y_label) << "</text>\n";
  for (std::size_t i = 0; i < markers.size(); ++i) {
    const VerticalMarker& m = markers[i];
    if (!std::isfinite(m.x) || m.x < x_lo || m.x > x_hi) continue;
    svg << "<line x1=\"" << svg_num(px(m.x)) << "\" y1=\"" << svg_num(kTop) << "\" x2=\""
        << svg_num(px(m.x)) << "\" y2=\"" << svg_num(kTop + plot_h) << "\" stroke=\""
        << svg_escape(m.color) << "\" stroke-dasharray=\"2 3\" stroke-width=\"1.5\"/>\n"
        << "<text x=\"" << svg_num(px(m.x) + 4) << "\" y=\""
        << svg_num(kTop + plot_h - 8 - 14.0 * static_cast<double>(i)) << "\" fill=\""
        << svg_escape(m.color) << "\">" << svg_escape(m.label) << "</text>\n";
  }
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
  }
  const double lx = kLeft + plot_w - 250, ly = kTop + 10;
  if (!drawn.empty()) {
    svg << "<rect x=\"" << svg_num(lx - 6) << "\" y=\"" << svg_num(ly - 6)
        << "\" width=\"246\" height=\"" << svg_num(18.0 * drawn.size() + 6)
        << "\" fill=\"white\" stroke=\"#999999\"/>\n";
  }
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    const double y = ly + 18.0 * i + 7;
    svg << "<line x1=\"" << svg_num(lx) << "\" y1=\"" << svg_num(y) << "\" x2=\""
        << svg_num(lx + 24) << "\" y2=\"" << svg_num(y) << "\" stroke=\""
        << svg_escape(drawn[i].series.color) << "\" stroke-width=\"2\""
        << (drawn[i].dashed ? " stroke-dasharray=\"6 4\"" : "") << "/>\n<text x=\""
        << svg_num(lx + 32) << "\" y=\"" << svg_num(y + 4) << "\">"
        << svg_escape(drawn[i].series.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lighthouse::cli
