#include "plot/svg_chart.hpp"

#include "plot/svg_text.hpp"

namespace lighthouse::cli {

void svg_begin(std::ostream& svg, double width, double height, int title_y,
               const std::string& title) {
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << svg_num(width / 2) << "\" y=\"" << title_y
      << "\" text-anchor=\"middle\" font-size=\"16\">" << svg_escape(title) << "</text>\n";
}

std::string svg_vertical_line(const PlotArea& area, double x) {
  return "<line x1=\"" + svg_num(x) + "\" y1=\"" + svg_num(area.top) + "\" x2=\"" + svg_num(x) +
         "\" y2=\"" + svg_num(area.top + area.height) + "\"";
}

std::string svg_horizontal_line(const PlotArea& area, double y) {
  return "<line x1=\"" + svg_num(area.left) + "\" y1=\"" + svg_num(y) + "\" x2=\"" +
         svg_num(area.left + area.width) + "\" y2=\"" + svg_num(y) + "\"";
}

void svg_x_tick_label(std::ostream& svg, const PlotArea& area, double x, const std::string& text) {
  svg << "<text x=\"" << svg_num(x) << "\" y=\"" << svg_num(area.top + area.height + 18)
      << "\" text-anchor=\"middle\">" << text << "</text>\n";
}

void svg_y_tick_label(std::ostream& svg, const PlotArea& area, double y, const std::string& text) {
  svg << "<text x=\"" << svg_num(area.left - 8) << "\" y=\"" << svg_num(y + 4)
      << "\" text-anchor=\"end\">" << text << "</text>\n";
}

void svg_frame(std::ostream& svg, const PlotArea& area, const PlotLabels& labels, double x_label_y,
               int y_label_x) {
  const double middle_y = area.top + area.height / 2;
  svg << "<rect x=\"" << svg_num(area.left) << "\" y=\"" << svg_num(area.top) << "\" width=\""
      << svg_num(area.width) << "\" height=\"" << svg_num(area.height)
      << "\" fill=\"none\" stroke=\"#333333\"/>\n"
      << "<text x=\"" << svg_num(area.left + area.width / 2) << "\" y=\"" << svg_num(x_label_y)
      << "\" text-anchor=\"middle\">" << svg_escape(labels.x_label) << "</text>\n"
      << "<text x=\"" << y_label_x << "\" y=\"" << svg_num(middle_y)
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 " << y_label_x << " "
      << svg_num(middle_y) << ")\">" << svg_escape(labels.y_label) << "</text>\n";
}

void svg_legend(std::ostream& svg, const LegendLayout& layout,
                const std::vector<LegendEntry>& entries) {
  if (entries.empty()) return;
  const double lx = layout.x, ly = layout.y;
  svg << "<rect x=\"" << svg_num(lx - 6) << "\" y=\"" << svg_num(ly - 6) << "\" width=\""
      << layout.box_width << "\" height=\""
      << svg_num(layout.row_height * static_cast<double>(entries.size()) + 6)
      << "\" fill=\"white\" stroke=\"#999999\"/>\n";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double y = ly + layout.row_height * static_cast<double>(i) + layout.first_row;
    svg << "<line x1=\"" << svg_num(lx) << "\" y1=\"" << svg_num(y) << "\" x2=\""
        << svg_num(lx + 24) << "\" y2=\"" << svg_num(y) << "\" stroke=\""
        << svg_escape(entries[i].color) << "\" stroke-width=\"2\"" << entries[i].line_attributes
        << "/>\n<text x=\"" << svg_num(lx + 32) << "\" y=\"" << svg_num(y + 4) << "\">"
        << svg_escape(entries[i].name) << "</text>\n";
  }
}

}  // namespace lighthouse::cli
