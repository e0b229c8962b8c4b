// The parts that the hand-written SVG charts (svg_plot's log-log latency chart, loss_chart's
// linear loss curves) draw the same way: the document's preamble, grid lines across the plot
// area, tick labels, the frame with the axis labels, and the legend. Each chart keeps its own
// geometry, scales and series; these only write the shared markup.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "plot/svg_plot.hpp"

namespace lighthouse::cli {

// The rectangle the data is drawn in, in SVG user units.
struct PlotArea {
  double left, top, width, height;
};

// The XML prolog, the <svg> element of a width x height canvas with a white background, and
// the title centred at y = title_y. The chart ends the document with "</svg>\n".
void svg_begin(std::ostream& svg, double width, double height, int title_y,
               const std::string& title);

// `<line ... y2="..."`: a line across the whole area, vertical at x or horizontal at y, left
// open for the caller to add attributes and close with "/>".
std::string svg_vertical_line(const PlotArea& area, double x);
std::string svg_horizontal_line(const PlotArea& area, double y);

// Tick labels: centred below the area at x, or right-aligned left of it at y.
void svg_x_tick_label(std::ostream& svg, const PlotArea& area, double x, const std::string& text);
void svg_y_tick_label(std::ostream& svg, const PlotArea& area, double y, const std::string& text);

// The frame around the area, the x label centred under it at y = x_label_y, and the y label
// turned upright at x = y_label_x, centred on the area's height.
void svg_frame(std::ostream& svg, const PlotArea& area, const PlotLabels& labels, double x_label_y,
               int y_label_x);

struct LegendEntry {
  std::string name, color;
  std::string line_attributes;  // extra attributes of the sample line, e.g. a dash pattern
};

// Where the legend goes: the first row's sample line starts at (x, y + first_row), rows are
// row_height apart, in a box of box_width starting 6 units above and left of (x, y).
struct LegendLayout {
  double x, y;
  int box_width;
  double row_height, first_row;
};

// A legend of sample lines and names; nothing at all without entries.
void svg_legend(std::ostream& svg, const LegendLayout& layout,
                const std::vector<LegendEntry>& entries);

}  // namespace lighthouse::cli
