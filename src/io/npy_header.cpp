#include "io/npy_header.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <optional>

#include "lighthouse/error.hpp"

namespace lighthouse::npy {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr std::uint64_t kAlign = 64;              // numpy aligns the data to 64 bytes
constexpr std::size_t kGrowthAxisMaxDigits = 21;  // numpy's spare room for growing shape[0]
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

struct Descr {
  std::string_view descr;
  DType dtype;
  std::size_t itemsize;
};
constexpr std::array<Descr, 4> kDescrs = {{{"<f4", DType::kFloat32, 4},
                                           {"<f8", DType::kFloat64, 8},
                                           {"<i4", DType::kInt32, 4},
                                           {"<i8", DType::kInt64, 8}}};
constexpr const char* kSupported = "'<f4' (float32), '<f8' (float64), '<i4' (int32), '<i8' (int64)";

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error(name + ": " + what);
}

// Bytes from a possibly hostile file, made safe to print: quoted, non-printable bytes as \xNN,
// cut after `max_chars` input bytes.
std::string printable(std::string_view bytes, std::size_t max_chars = 80) {
  static const char* const kHex = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < bytes.size() && i < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\\' || c == '\'') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += '\'';
  if (bytes.size() > max_chars) out += "...";
  return out;
}

std::uint64_t read_le(std::string_view bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = bytes.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_ident(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// The three values of the header dict as written, before their meaning is checked.
struct RawHeader {
  std::optional<std::string_view> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<std::string_view>> shape;  // the integer tokens, e.g. "-3", "5L"
  std::string_view shape_text;                         // "(2, 3)" as written
};

// A recursive-descent parser for the subset of Python literal syntax a .npy header uses:
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } with any key order, any
// whitespace and an optional trailing comma. Python 2 era files may write longs as 5L.
class DictParser {
 public:
  DictParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  RawHeader parse() {
    RawHeader raw;
    skip_space();
    if (peek() != '{') malformed("expected a dict literal starting with '{'");
    ++pos_;
    while (true) {
      skip_space();
      if (peek() == '}') break;  // an empty dict, or after a trailing comma
      const std::size_t key_pos = pos_;
      const std::string_view key = parse_string("a quoted key");
      skip_space();
      if (peek() != ':') malformed("expected ':' after key " + printable(key));
      ++pos_;
      skip_space();
      if (key == "descr") {
        if (raw.descr) duplicate(key, key_pos);
        raw.descr = parse_descr();
      } else if (key == "fortran_order") {
        if (raw.fortran_order) duplicate(key, key_pos);
        raw.fortran_order = parse_bool(key);
      } else if (key == "shape") {
        if (raw.shape) duplicate(key, key_pos);
        const std::size_t start = pos_;
        raw.shape = parse_shape();
        raw.shape_text = text_.substr(start, pos_ - start);
      } else {
        pos_ = key_pos;
        malformed("unexpected key " + printable(key) +
                  " (a .npy header has exactly the keys 'descr', 'fortran_order' and 'shape')");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') malformed("expected ',' or '}' after the value of " + printable(key));
      break;
    }
    ++pos_;  // the '}'
    skip_space();
    if (pos_ != text_.size()) malformed("unexpected text after the closing '}'");

    std::string missing;
    for (const auto& [present, key] : {std::pair{raw.descr.has_value(), "'descr'"},
                                       std::pair{raw.fortran_order.has_value(), "'fortran_order'"},
                                       std::pair{raw.shape.has_value(), "'shape'"}}) {
      if (!present) missing += (missing.empty() ? "" : ", ") + std::string(key);
    }
    if (!missing.empty()) fail(name_, "the .npy header lacks the key(s) " + missing);
    return raw;
  }

 private:
  [[noreturn]] void malformed(const std::string& what) const {
    fail(name_, "malformed .npy header: " + what + " at character " + std::to_string(pos_) +
                    " of " + printable(text_));
  }
  [[noreturn]] void duplicate(std::string_view key, std::size_t key_pos) {
    pos_ = key_pos;
    malformed("duplicate key " + printable(key));
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }
  void skip_space() {
    while (!at_end() && is_space(text_[pos_])) ++pos_;
  }

  // A plain '...' or "..." literal; escapes are never needed in a header, so refuse them
  // rather than misread them.
  std::string_view parse_string(const char* what) {
    const char quote = peek();
    if (quote != '\'' && quote != '"') malformed(std::string("expected ") + what);
    const std::size_t start = ++pos_;
    while (!at_end() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') malformed("escape sequences in strings are not supported");
      if (text_[pos_] == '\n') malformed("unterminated string");
      ++pos_;
    }
    if (at_end()) malformed("unterminated string");
    return text_.substr(start, pos_++ - start);
  }

  std::string_view parse_descr() {
    if (peek() == '[') {
      fail(name_, "structured dtypes (a list as 'descr') are not supported; supported: " +
                      std::string(kSupported));
    }
    return parse_string("a quoted dtype string as the value of 'descr'");
  }

  bool parse_bool(std::string_view key) {
    for (const auto& [word, value] :
         {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_, word.size()) == word &&
          (pos_ + word.size() == text_.size() || !is_ident(text_[pos_ + word.size()]))) {
        pos_ += word.size();
        return value;
      }
    }
    malformed("expected True or False as the value of " + printable(key));
  }

  std::vector<std::string_view> parse_shape() {
    if (peek() != '(') malformed("expected a tuple such as (5,) or (2, 3) as the value of 'shape'");
    ++pos_;
    std::vector<std::string_view> dims;
    bool trailing_comma = false;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      dims.push_back(parse_int());
      skip_space();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
        continue;
      }
      if (peek() != ')') malformed("expected ',' or ')' in 'shape'");
      break;
    }
    ++pos_;  // the ')'
    // In Python (5) is the integer 5, not a tuple.
    if (dims.size() == 1 && !trailing_comma) {
      malformed("'shape' is a parenthesised integer, not a tuple (a 1-d shape is written (5,))");
    }
    return dims;
  }

  std::string_view parse_int() {
    const std::size_t start = pos_;
    if (peek() == '-' || peek() == '+') ++pos_;
    if (!is_digit(peek())) malformed("expected an integer in 'shape'");
    while (is_digit(peek())) ++pos_;
    if (peek() == 'L' || peek() == 'l') ++pos_;  // a Python 2 long
    return text_.substr(start, pos_ - start);
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

// One dimension token of a syntactically valid shape; negative and too-large values are
// refused with the whole shape in the message.
std::int64_t parse_dim(std::string_view token, std::string_view shape_text,
                       const std::string& name) {
  const bool negative = token.front() == '-';
  std::string_view digits = token;
  if (digits.front() == '-' || digits.front() == '+') digits.remove_prefix(1);
  if (digits.back() == 'L' || digits.back() == 'l') digits.remove_suffix(1);
  std::uint64_t value = 0;
  bool too_large = false;
  for (const char c : digits) {
    if (value > (static_cast<std::uint64_t>(kInt64Max) - (c - '0')) / 10) {
      too_large = true;
      break;
    }
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  const bool nonzero = digits.find_first_not_of('0') != std::string_view::npos;
  if (negative && nonzero) {
    fail(name,
         "'shape' " + printable(shape_text) + " has a negative dimension " + printable(token));
  }
  if (too_large) {
    fail(name, "'shape' " + printable(shape_text) + " has a dimension " + printable(token) +
                   " larger than the int64 maximum 9223372036854775807");
  }
  return static_cast<std::int64_t>(value);
}

const Descr* find_descr(std::string_view descr) {
  for (const Descr& d : kDescrs) {
    if (d.descr == descr) return &d;
  }
  return nullptr;
}

const Descr& descr_entry(DType dtype) {
  for (const Descr& d : kDescrs) {
    if (d.dtype == dtype) return d;
  }
  throw InvalidArgument("dtype", dtype_name(dtype),
                        "must be float32, float64, int32 or int64 to be stored as .npy");
}

}  // namespace

Preamble read_preamble(std::string_view head, std::uint64_t file_size, const std::string& name) {
  if (head.size() < kMagic.size() || head.substr(0, kMagic.size()) != kMagic) {
    if (head.size() == file_size && kMagic.substr(0, head.size()) == head) {
      fail(name, "truncated .npy header: the file has only " + std::to_string(file_size) +
                     " bytes, fewer than the 6-byte magic string '\\x93NUMPY'");
    }
    fail(name, "not a .npy file: bad magic, it starts with " + printable(head.substr(0, 8)) +
                   " instead of '\\x93NUMPY'");
  }
  if (file_size < 8) {
    fail(name, "truncated .npy header: the file ends after " + std::to_string(file_size) +
                   " bytes, before the format version");
  }
  Preamble p;
  p.major = static_cast<unsigned char>(head[6]);
  const int minor = static_cast<unsigned char>(head[7]);
  if (p.major < 1 || p.major > 3 || minor != 0) {
    fail(name, "unsupported .npy format version " + std::to_string(p.major) + "." +
                   std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  // Version 1.0 stores the header length as a little-endian u16, 2.0 and 3.0 as a u32.
  p.header_begin = p.major == 1 ? 10 : 12;
  if (file_size < p.header_begin) {
    fail(name, "truncated .npy header: the file ends after " + std::to_string(file_size) +
                   " bytes, inside the " + std::to_string(p.header_begin) +
                   "-byte preamble of format version " + std::to_string(p.major) + ".0");
  }
  const std::uint64_t header_len = read_le(head.substr(8, p.header_begin - 8));
  p.header_end = p.header_begin + header_len;
  if (p.header_end > file_size) {
    fail(name, "header length " + std::to_string(header_len) +
                   " runs past the end of the file: the header would end at byte " +
                   std::to_string(p.header_end) + " but the file has " + std::to_string(file_size) +
                   " bytes");
  }
  return p;
}

Layout parse_header(std::string_view text, std::uint64_t data_bytes_present,
                    const std::string& name) {
  const RawHeader raw = DictParser(text, name).parse();

  const std::string_view descr = *raw.descr;
  const Descr* entry = find_descr(descr);
  if (!entry) {
    if (descr.size() > 1 && descr.front() == '>') {
      std::string little(descr);
      little.front() = '<';
      if (find_descr(little)) {
        fail(name, "big-endian data is not supported; convert with arr.astype('" + little + "')");
      }
    }
    fail(name, "unsupported dtype " + printable(descr) + "; supported: " + kSupported);
  }
  if (*raw.fortran_order) {
    fail(name, "Fortran-order arrays are not supported; use np.ascontiguousarray");
  }

  Layout layout;
  layout.dtype = entry->dtype;
  layout.shape.reserve(raw.shape->size());
  for (const std::string_view token : *raw.shape) {
    layout.shape.push_back(parse_dim(token, raw.shape_text, name));
  }
  // A zero dimension makes the array empty whatever the others are, so only a shape without
  // zeros can overflow.
  layout.numel = 1;
  if (std::find(layout.shape.begin(), layout.shape.end(), 0) != layout.shape.end()) {
    layout.numel = 0;
  } else {
    for (const std::int64_t d : layout.shape) {
      if (__builtin_mul_overflow(layout.numel, d, &layout.numel)) {
        fail(name, "'shape' " + printable(raw.shape_text) +
                       " has more elements than fit in int64 (the product overflows)");
      }
    }
  }
  std::int64_t bytes = 0;
  if (__builtin_mul_overflow(layout.numel, static_cast<std::int64_t>(entry->itemsize), &bytes)) {
    fail(name, "'shape' " + printable(raw.shape_text) + " of dtype '" + std::string(descr) +
                   "' needs more bytes than fit in int64");
  }
  layout.data_bytes = static_cast<std::uint64_t>(bytes);
  const std::string need = "shape " + printable(raw.shape_text) + " of dtype '" +
                           std::string(descr) + "' needs " + std::to_string(layout.data_bytes) +
                           " data bytes";
  if (data_bytes_present < layout.data_bytes) {
    fail(name, "data is truncated: " + need + " but only " + std::to_string(data_bytes_present) +
                   " are present after the header");
  }
  if (data_bytes_present > layout.data_bytes) {
    fail(name, std::to_string(data_bytes_present - layout.data_bytes) +
                   " trailing bytes after the data: " + need + " but " +
                   std::to_string(data_bytes_present) + " follow the header");
  }
  return layout;
}

const char* descr_of(DType dtype) {
  return descr_entry(dtype).descr.data();
}
std::size_t itemsize_of(DType dtype) {
  return descr_entry(dtype).itemsize;
}

std::string shape_repr(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ',';
  return s + ")";
}

std::string format_header(DType dtype, const std::vector<std::int64_t>& shape) {
  std::string dict = "{'descr': '" + std::string(descr_of(dtype)) +
                     "', 'fortran_order': False, 'shape': " + shape_repr(shape) + ", }";
  // Like numpy, leave room for shape[0] to grow to any width in place (appending to a file).
  if (!shape.empty()) {
    const std::size_t width = std::to_string(shape.front()).size();
    dict.append(kGrowthAxisMaxDigits - std::min(width, kGrowthAxisMaxDigits), ' ');
  }
  // numpy's rule: pad with 1 to 64 spaces plus '\n' so that the data starts at a multiple of
  // 64. Version 1.0 unless its u16 length cannot hold the header.
  for (const int major : {1, 2}) {
    const std::uint64_t preamble = major == 1 ? 10 : 12;
    const std::uint64_t text_len = dict.size() + 1;  // + '\n'
    const std::uint64_t pad = kAlign - (preamble + text_len) % kAlign;
    const std::uint64_t header_len = text_len + pad;
    if (major == 1 && header_len > 0xffff) continue;
    std::string out(kMagic);
    out += static_cast<char>(major);
    out += '\0';
    for (std::uint64_t i = 0; i < preamble - 8; ++i) {
      out += static_cast<char>((header_len >> (8 * i)) & 0xff);
    }
    out += dict;
    out.append(pad, ' ');
    out += '\n';
    return out;
  }
  throw InvalidArgument("shape", shape_repr(shape), "is too long for a .npy header");
}

}  // namespace lighthouse::npy
