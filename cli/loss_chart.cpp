#include "loss_chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace lighthouse::cli {

namespace {

constexpr double kWidth = 900, kHeight = 520, kLeft = 70, kRight = 20, kTop = 45, kBottom = 50;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
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
      << "<text x=\"" << num(kWidth / 2) << "\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">"
      << escape(labels.title) << "</text>\n<g stroke=\"#e0e0e0\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs) {
    svg << "<line x1=\"" << num(px(x)) << "\" y1=\"" << num(kTop) << "\" x2=\"" << num(px(x))
        << "\" y2=\"" << num(kTop + plot_h) << "\"/>\n";
  }
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys) {
    svg << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(py(y)) << "\" x2=\""
        << num(kLeft + plot_w) << "\" y2=\"" << num(py(y)) << "\"/>\n";
  }
  svg << "</g>\n<g fill=\"#333333\">\n";
  for (double x = x_lo; x <= x_hi + xs / 2; x += xs) {
    svg << "<text x=\"" << num(px(x)) << "\" y=\"" << num(kTop + plot_h + 18)
        << "\" text-anchor=\"middle\">" << label(x) << "</text>\n";
  }
  for (double y = y_lo; y <= y_hi + ys / 2; y += ys) {
    svg << "<text x=\"" << num(kLeft - 8) << "\" y=\"" << num(py(y) + 4)
        << "\" text-anchor=\"end\">" << label(y) << "</text>\n";
  }
  svg << "</g>\n<rect x=\"" << num(kLeft) << "\" y=\"" << num(kTop) << "\" width=\"" << num(plot_w)
      << "\" height=\"" << num(plot_h) << "\" fill=\"none\" stroke=\"#333333\"/>\n"
      << "<text x=\"" << num(kLeft + plot_w / 2) << "\" y=\"" << num(kHeight - 12)
      << "\" text-anchor=\"middle\">" << escape(labels.x_label) << "</text>\n"
      << "<text x=\"18\" y=\"" << num(kTop + plot_h / 2)
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " << num(kTop + plot_h / 2) << ")\">"
      << escape(labels.y_label) << "</text>\n";
  for (std::size_t i = 0; i < markers.size(); ++i) {
    const VerticalMarker& m = markers[i];
    if (!std::isfinite(m.x) || m.x < x_lo || m.x > x_hi) continue;
    svg << "<line x1=\"" << num(px(m.x)) << "\" y1=\"" << num(kTop) << "\" x2=\"" << num(px(m.x))
        << "\" y2=\"" << num(kTop + plot_h) << "\" stroke=\"" << escape(m.color)
        << "\" stroke-dasharray=\"2 3\" stroke-width=\"1.5\"/>\n"
        << "<text x=\"" << num(px(m.x) + 4) << "\" y=\""
        << num(kTop + plot_h - 8 - 14.0 * static_cast<double>(i)) << "\" fill=\"" << escape(m.color)
        << "\">" << escape(m.label) << "</text>\n";
  }
  for (const LossSeries& s : drawn) {
    const std::string color = escape(s.series.color);
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\""
        << (s.dashed ? "2\" stroke-dasharray=\"6 4" : "1.5") << "\" points=\"";
    for (const auto& [x, y] : s.series.points) svg << num(px(x)) << "," << num(py(y)) << " ";
    svg << "\"/>\n";
    if (s.dashed) {
      for (const auto& [x, y] : s.series.points) {
        svg << "<circle cx=\"" << num(px(x)) << "\" cy=\"" << num(py(y)) << "\" r=\"3\" fill=\""
            << color << "\"/>\n";
      }
    }
  }
  const double lx = kLeft + plot_w - 250, ly = kTop + 10;
  if (!drawn.empty()) {
    svg << "<rect x=\"" << num(lx - 6) << "\" y=\"" << num(ly - 6) << "\" width=\"246\" height=\""
        << num(18.0 * drawn.size() + 6) << "\" fill=\"white\" stroke=\"#999999\"/>\n";
  }
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    const double y = ly + 18.0 * i + 7;
    svg << "<line x1=\"" << num(lx) << "\" y1=\"" << num(y) << "\" x2=\"" << num(lx + 24)
        << "\" y2=\"" << num(y) << "\" stroke=\"" << escape(drawn[i].series.color)
        << "\" stroke-width=\"2\"" << (drawn[i].dashed ? " stroke-dasharray=\"6 4\"" : "")
        << "/>\n<text x=\"" << num(lx + 32) << "\" y=\"" << num(y + 4) << "\">"
        << escape(drawn[i].series.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lighthouse::cli
