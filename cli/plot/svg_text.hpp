// Text helpers shared by the hand-written SVG charts (svg_plot, loss_chart).
#pragma once

#include <cstdio>
#include <string>

namespace lighthouse::cli {

// A coordinate with one decimal: enough for SVG user units, and stable across platforms.
inline std::string svg_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Escapes the characters that are special in SVG text and attribute values.
inline std::string svg_escape(const std::string& text) {
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

}  // namespace lighthouse::cli
