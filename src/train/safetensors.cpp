#include "train/safetensors.hpp"

#include <bit>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

namespace lighthouse::train {

namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  return nlohmann::json(shape).dump();
}

// product(shape) or -1 when a dimension is negative or the product overflows.
std::int64_t elements(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0 || (d > 0 && n > std::numeric_limits<std::int64_t>::max() / d)) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

std::string encode_safetensors(const std::vector<SafetensorsEntry>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");
  nlohmann::ordered_json header;
  header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const SafetensorsEntry& t : tensors) {
    const auto bytes = static_cast<std::size_t>(elements(t.shape)) * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::string out(8, '\0');
  const std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(n >> (8 * i));
  out += json;
  out.reserve(out.size() + offset);
  for (const SafetensorsEntry& t : tensors) {
    out.append(reinterpret_cast<const char*>(t.data),
               static_cast<std::size_t>(elements(t.shape)) * sizeof(float));
  }
  return out;
}

SafetensorsFile decode_safetensors(const std::string& file, std::string bytes) {
  if (bytes.size() < 8) {
    throw CheckpointError(file, "truncated: " + std::to_string(bytes.size()) +
                                    " bytes, shorter than the 8-byte header length");
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > bytes.size() - 8) {
    throw CheckpointError(file, "truncated or corrupt: the header claims " + std::to_string(n) +
                                    " bytes but only " + std::to_string(bytes.size() - 8) +
                                    " follow");
  }
  SafetensorsFile out;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(file, std::string("corrupt JSON header: ") + e.what());
  }
  if (!header.is_object()) throw CheckpointError(file, "the JSON header is not an object");
  const std::size_t data_start = 8 + n, data_size = bytes.size() - data_start;
  try {
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        for (const auto& [key, value] : entry.items()) {
          out.metadata[key] = value.get<std::string>();
        }
        continue;
      }
      const std::string dtype = entry.at("dtype").get<std::string>();
      if (dtype != "F32") {
        throw CheckpointError(file,
                              "tensor " + name + " has dtype " + dtype + "; only F32 is read");
      }
      SafetensorsFile::Tensor t;
      t.shape = entry.at("shape").get<std::vector<std::int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
      const std::int64_t count = elements(t.shape);
      if (offsets.size() != 2 || count < 0 || offsets[0] > offsets[1] || offsets[1] > data_size ||
          offsets[1] - offsets[0] != static_cast<std::uint64_t>(count) * sizeof(float)) {
        throw CheckpointError(file, "tensor " + name + " of shape " + shape_text(t.shape) +
                                        " has data_offsets " + entry.at("data_offsets").dump() +
                                        " that do not fit its size or the " +
                                        std::to_string(data_size) + " data bytes (truncated?)");
      }
      t.offset = data_start + offsets[0];
      t.bytes = offsets[1] - offsets[0];
      out.tensors[name] = std::move(t);
    }
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(file, std::string("malformed header entry: ") + e.what());
  }
  out.bytes = std::move(bytes);
  return out;
}

void SafetensorsFile::read(const std::string& file, const std::string& name,
                           const std::vector<std::int64_t>& shape, float* out) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) throw CheckpointError(file, "has no tensor " + name);
  if (it->second.shape != shape) {
    throw CheckpointError(file, "tensor " + name + " has shape " + shape_text(it->second.shape) +
                                    ", the model needs " + shape_text(shape));
  }
  std::memcpy(out, bytes.data() + it->second.offset, it->second.bytes);
}

}  // namespace lighthouse::train
